"""deploy-pipeline: deploy an environment of services in ordered stages to Kubernetes, the local
Docker engine, or a simulated target, from one `.deploy-pipeline.yml`.
"""

__version__ = "0.1.0"
