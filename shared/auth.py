"""API keys: `Authorization: Bearer <key>`; the key names the tenant, the body never does."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status


def tenant_for_key(tenants_by_key: dict[str, str], presented: str) -> str | None:
    """The tenant of a key, compared in constant time so timing does not reveal keys."""
    found = None
    for key, tenant in tenants_by_key.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            found = tenant
    return found


def require_tenant(request: Request) -> str:
    """FastAPI dependency: the caller's tenant, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    tenants_by_key: dict[str, str] = request.app.state.tenants_by_key
    tenant = tenant_for_key(tenants_by_key, presented.strip()) if scheme.lower() == "bearer" else None
    if tenant is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or unknown API key: send Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant


TenantDep = Annotated[str, Depends(require_tenant)]
