"""deploy-pipeline: deploy an environment of services in ordered stages to Kubernetes, the local
Docker engine, or a simulated target, from one `.deploy-pipeline.yml`.
"""


def __getattr__(name: str) -> str:
    """`__version__`: pyproject.toml's, read from the package metadata when asked (importing
    importlib.metadata would cost every start of the command ~40 ms and 4 MiB)."""
    if name == "__version__":
        from importlib.metadata import version

        return version("deploy-pipeline")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
