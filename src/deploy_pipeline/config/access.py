"""What reaching a Kubernetes target's services takes (DESIGN.md §11): a target's `tls:` (a
cert-manager issuer or an existing TLS Secret, exactly one) and a prebuilt image's own registry
login, `registry_auth:` (names of environment variables, never values)."""

from __future__ import annotations

import re

from deploy_pipeline import schema
from deploy_pipeline.config.checks import VARIABLE
from deploy_pipeline.config.problems import Loc, Problems, quote
from deploy_pipeline.model import BUILT, RegistryAuth, Tls

OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
TLS_KEYS = {
    "issuer": "a cert-manager ClusterIssuer",
    "secret": "an existing TLS Secret",
}


def target_tls(problems: Problems, loc: Loc, t: schema.TargetModel) -> Tls | None:
    """A target's `tls:`, checked: kubernetes only, with a `domain:` to serve, and exactly one
    of `issuer:` and `secret:`, each a Kubernetes object name."""
    if t.tls is None:
        return None
    at: Loc = (*loc, "tls")
    if t.kind != "kubernetes":
        problems.error(at, f"only kubernetes targets take `tls:`, this one is {t.kind}")
    elif t.domain is None:
        problems.error(
            at,
            "TLS is served on public services' Ingress, whose host comes from the target's "
            '`domain:`: add one, e.g. domain: "{service}.{environment}.example.com"',
        )
    given = [key for key in TLS_KEYS if getattr(t.tls, key) is not None]
    if len(given) != 1:
        what = "both" if given else "neither"
        problems.error(
            at,
            f"give exactly one of `issuer:` ({TLS_KEYS['issuer']} that issues each public "
            f"service's certificate, e.g. tls: {{issuer: letsencrypt}}) or `secret:` "
            f"({TLS_KEYS['secret']} in each environment's namespace), got {what}",
        )
    for key in given:
        value = str(getattr(t.tls, key))
        if not OBJECT_NAME.fullmatch(value) or len(value) > 253:
            problems.error(
                (*at, key),
                f"expected the name of {TLS_KEYS[key]} (lowercase letters, digits, '-' and "
                f"'.', at most 253), got {quote(value)}",
            )
    return Tls(issuer=t.tls.issuer, secret=t.tls.secret)


def registry_auth(problems: Problems, loc: Loc, s: schema.ServiceModel) -> RegistryAuth | None:
    """A service's `registry_auth:`, checked: for a prebuilt `image:` only (a built one is
    pulled from the pipeline's `registry:` with the Docker login's credentials), and naming
    environment variables."""
    if s.registry_auth is None:
        return None
    at: Loc = (*loc, "registry_auth")
    if s.type in BUILT and s.build is not None:
        problems.error(
            at,
            "a built image is pushed to the pipeline's `registry:` and pulled from it with the "
            "Docker login's credentials (docker login, or the Action's registry-username and "
            "registry-password); `registry_auth:` is for a prebuilt `image:` from another "
            "private registry: remove it",
        )
    auth = s.registry_auth
    for key in ("username", "password"):
        name = getattr(auth, key)
        if not VARIABLE.fullmatch(name):
            problems.error(
                (*at, key),
                "expected the name of an environment variable holding it "
                f"(letters, digits, '_'), got {quote(name)}",
            )
    return RegistryAuth(username=auth.username, password=auth.password)
