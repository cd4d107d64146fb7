"""API keys: `Authorization: Bearer <key>`; the key names the tenant, the body never does.

Each service builds its `TenantDep` with `tenant_dependency(root)`, over the keys its composition
root holds. The dependency is an `async def`: it then runs in the request's task, so the tenant it
binds to the log lines reaches the route's (a sync one would bind it in a worker thread's copy of
the context).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.logs import bind

# Reads the header, and writes the scheme into each OpenAPI document; the 401 is ours (below).
_bearer = HTTPBearer(auto_error=False, description="An API key from EXPERTMATCH_API_KEYS; it names the tenant.")

BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def tenant_for_key(tenants_by_key: Mapping[str, str], presented: str) -> str | None:
    """The tenant of a key, compared in constant time so timing does not reveal keys."""
    found = None
    for key, tenant in tenants_by_key.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            found = tenant
    return found


def authenticate(tenants_by_key: Mapping[str, str], credentials: HTTPAuthorizationCredentials | None) -> str:
    """The caller's tenant, or 401; the tenant is bound to the rest of the request's log lines."""
    tenant = tenant_for_key(tenants_by_key, credentials.credentials.strip()) if credentials is not None else None
    if tenant is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or unknown API key: send Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    bind(tenant=tenant)
    return tenant


def tenant_dependency(root: Callable[..., Any]) -> Callable[..., Awaitable[str]]:
    """A dependency giving the caller's tenant from the `tenants_by_key` of what the dependency `root` gives."""

    async def tenant(credentials: BearerDep, running: Any = Depends(root)) -> str:  # noqa: B008 (FastAPI's way)
        return authenticate(running.tenants_by_key, credentials)

    return tenant
