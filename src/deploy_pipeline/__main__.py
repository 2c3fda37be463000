"""`python -m deploy_pipeline`: the same as the `deploy-pipeline` command."""

from deploy_pipeline.cli import main

raise SystemExit(main())
