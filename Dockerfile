# The GitHub Action's image (action.yml: `runs: using: docker`). GitHub builds it from the repo and
# runs it as root, the only user that can write the mounted workspace. Two stages: the second
# copies a trimmed virtualenv onto a clean base, so no build tool or cache ships.
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
COPY pyproject.toml README.md /src/
COPY src /src/src
COPY docker/slim.py /slim.py
# What the Action never imports stays out: kubernetes>=36's asyncio copy of the client (70 MB),
# rich (the CLI's live view), the receiver's server (starlette, uvicorn, prometheus-client),
# cryptography (GitHub App keys), the PostgreSQL client (psycopg: the Action keeps its state in
# SQLite), tzdata (Debian has it) and pip.
# The kubernetes and GitHub clients are kept without their docstrings (docker/slim.py).
RUN python -m venv /opt/deploy-pipeline \
 && /opt/deploy-pipeline/bin/pip install --no-compile "kubernetes>=30,<36" /src \
 && /opt/deploy-pipeline/bin/pip uninstall -y rich pygments markdown-it-py mdurl cryptography \
      starlette anyio sniffio uvicorn click h11 httptools uvloop prometheus-client psycopg \
      psycopg-binary tzdata pip \
 && cd /opt/deploy-pipeline/lib/python3.11/site-packages \
 && rm -rf setuptools* pkg_resources _distutils_hack distutils-precedence.pth cryptography \
 && find . -depth \( -name tests -o -name __pycache__ \) -type d -exec rm -rf {} + \
 && find . -name '*.pyi' -delete \
 && python /slim.py kubernetes github docker \
 && python -m compileall -q -o 2 deploy_pipeline \
 && /opt/deploy-pipeline/bin/python -c "import deploy_pipeline.action, deploy_pipeline.github, \
      deploy_pipeline.backends.kube, deploy_pipeline.backends.engine"

FROM python:3.11-slim-bookworm
COPY --from=build /opt/deploy-pipeline /opt/deploy-pipeline
COPY entrypoint.sh /entrypoint.sh
ENV PATH=/opt/deploy-pipeline/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
ENTRYPOINT ["/entrypoint.sh"]
