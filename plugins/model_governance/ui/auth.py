"""Only signed-in Airflow users see the view: Airflow's own authentication, applied to the plugin's routes.

A plugin's FastAPI app is mounted beside Airflow's API without its security dependencies, so every route
here depends on `signed_in_user`. It asks Airflow's `get_user` (`airflow.api_fastapi.core_api.security`):
the JWT from `Authorization: Bearer …` or from the `_token` cookie the login page sets, checked by the
configured auth manager's `get_user_from_token` (signature, expiry, revocation). There is no login of our
own. A signed-in user must also be allowed to read DAG runs: a deployment is what a run did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import HTTPException, Request, status

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser


class NotSignedIn(Exception):
    """No valid Airflow token on the request: a browser is sent to the login page, an API client gets 401."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotAllowed(Exception):
    """A signed-in user the auth manager does not let read DAG runs: 403."""

    def __init__(self, user: str) -> None:
        super().__init__(user)
        self.user = user


async def signed_in_user(request: Request) -> BaseUser:
    """The Airflow user of the request, authenticated by Airflow's own machinery; `NotSignedIn` otherwise."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    try:
        user = await get_user(request, _oauth_token=None, bearer_credentials=await bearer_scheme(request))
    except HTTPException as exc:  # 401 no or expired token, 403 a token that does not verify
        if exc.status_code in (status.HTTP_401_UNAUTHORIZED, status.HTTP_403_FORBIDDEN):
            raise NotSignedIn(str(exc.detail)) from None
        raise
    if not get_auth_manager().is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN, user=user):
        raise NotAllowed(user.get_name())
    return user


def login_url(request: Request) -> str:
    """The auth manager's login page, coming back to this page once signed in."""
    from airflow.api_fastapi.app import get_auth_manager

    raw_path = request.scope.get("raw_path")  # as the browser sent it: a run id's `%2B` stays encoded
    path = raw_path.decode("latin-1") if raw_path else request.url.path
    here = path + (f"?{request.url.query}" if request.url.query else "")
    return get_auth_manager().get_url_login(next_url=here)
