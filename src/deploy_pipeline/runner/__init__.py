"""The stage runner: the only place that decides what runs when (DESIGN.md §2).

    run.py       Run: environments and targets in their strategy's order, the run's result
      ↓
    snapshot.py  what a view sees of a pipeline now (StepViews, why a step waits)
      ↓
    scheduler.py one environment × target: the coordinator, its pools, retries, deadlines

What a view shows (StepView, RunResult, the waiting sentences) is steps.py's, below the runner.
"""

from deploy_pipeline.runner.run import Run
from deploy_pipeline.runner.scheduler import Cancel, LogSink, RunOptions

__all__ = ["Cancel", "LogSink", "Run", "RunOptions"]
