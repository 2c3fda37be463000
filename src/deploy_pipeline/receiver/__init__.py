"""The webhook receiver (`deploy-pipeline serve`): a preview environment for every pull request,
on the same stage runner as the CLI and the Action, reported to GitHub the same way.

- `service`: the durable queue, its worker threads and the runs behind the 202;
- `http`: the Starlette app of DESIGN.md §6 (webhooks, JSON API, health, metrics);
- `serving`: configuration from the environment, JSON logs, uvicorn.
"""

from deploy_pipeline.receiver.http import create_app
from deploy_pipeline.receiver.metrics import Metrics
from deploy_pipeline.receiver.service import Receiver
from deploy_pipeline.receiver.serving import JsonLogs, from_environ, serve

__all__ = ["JsonLogs", "Metrics", "Receiver", "create_app", "from_environ", "serve"]
