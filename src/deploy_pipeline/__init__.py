"""deploy-pipeline: deploy an environment of services in ordered stages to Kubernetes, the local
Docker engine, or a simulated target, from one `.deploy-pipeline.yml`.
"""

from importlib.metadata import version

__version__ = version("deploy-pipeline")  # pyproject.toml says it, once
