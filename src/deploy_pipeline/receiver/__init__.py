"""The webhook receiver (`deploy-pipeline serve`): a preview environment for every pull request,
on the same stage runner as the CLI and the Action, reported to GitHub the same way.

- `serving`: configuration from the environment, JSON logs, uvicorn;
- `http`: the Starlette app of DESIGN.md §6 (webhooks, JSON API, health, metrics), with `views`
  (the status page, one environment's cards, a run's live events), `environments` (list, clone,
  order an action), `openapi` and `paging`, over `common` (JSON answers, the token check);
- `service`: the Receiver: intake into the durable queue, its worker threads and the runs behind
  the 202, with `housekeeping` (ttl, max, closed pull requests), `sources` (where a run's
  pipeline file comes from), `metrics`, `outbox` (what is still to tell GitHub), `checkout` and
  `cards` (a run's events as service cards).

The arrows go down only (`.importlinter`'s receiver contract); SQL stays in `store/`.
"""

from deploy_pipeline.receiver.http import create_app
from deploy_pipeline.receiver.metrics import Metrics
from deploy_pipeline.receiver.service import Receiver
from deploy_pipeline.receiver.serving import JsonLogs, from_environ, serve

__all__ = ["JsonLogs", "Metrics", "Receiver", "create_app", "from_environ", "serve"]
