"""The web dashboard: one page and its bundled files, served by the agent itself (no CDN, no second server), and
the exchange of an agent token for a session cookie. Everything the page shows or does goes through the public
/v1 API with that cookie (vmhost/api/sessions.py says why a cookie, and how it is guarded)."""

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vmhost.api.agent import Agent
from vmhost.api.auth import Refusal
from vmhost.api.principal import Principal
from vmhost.api.sessions import COOKIE, LIFETIME_SECONDS
from vmhost.host.tokens import digest

STATIC = Path(__file__).with_name("dashboard_files")
"""Built by dashboard/build.sh from dashboard/src (committed: the agent needs no npm)."""
PAGE_HEADERS = {
    # no inline script; styles may be inline (the terminal widget sets them); nothing from elsewhere
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load_assets(directory: Path = STATIC) -> dict[str, Asset]:
    """Every file of the bundle, read once: only these names are ever served (no path reaches the disk)."""
    assets = {}
    for path in sorted(directory.iterdir()) if directory.is_dir() else []:
        if path.is_file():
            body = path.read_bytes()
            media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            assets[path.name] = Asset(body, media, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return assets


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=512, description="An agent token (admin or read-only).")


class SessionView(BaseModel):
    principal: str
    read_only: bool
    csrf: str | None = Field(description="Send it as X-CSRF-Token with every change made with the session.")


def router(agent: Agent) -> APIRouter:
    api = APIRouter(prefix="/ui", tags=["dashboard"])
    assets = load_assets()
    auth = agent.auth

    @api.get("", include_in_schema=False)
    @api.get("/", include_in_schema=False)
    def page() -> Response:
        index = assets.get("index.html")
        if index is None:
            raise HTTPException(404, "the dashboard is not built into this install (dashboard/build.sh)")
        return Response(index.body, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @api.get("/static/{name}", include_in_schema=False)
    def asset(name: str, if_none_match: Annotated[str | None, Header()] = None) -> Response:
        found = assets.get(name)
        if found is None:
            raise HTTPException(404, f"no dashboard file {name}")
        headers = {"ETag": found.etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if if_none_match == found.etag:
            return Response(status_code=304, headers=headers)
        return Response(found.body, media_type=found.media_type, headers=headers)

    # The session routes stay out of the OpenAPI document: they are the page's own, open by design (sign-in
    # takes a token in its body), and every client other than a browser sends its token with each request.
    @api.post("/session", response_model=SessionView, include_in_schema=False)
    async def sign_in(request: Request) -> Response:
        """Exchange a token for a session cookie. JSON only: a form of another site cannot send it. Wrong tokens
        count against their source as on every other route (guesses.py)."""
        refused = auth.guessed_too_often(request.scope)
        if refused is not None:
            raise HTTPException(refused.status, refused.message, headers=refused.headers())
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(415, 'sign in with a JSON body {"token": ...}')
        try:
            body = SignIn.model_validate_json(await request.body())
        except ValidationError:
            raise HTTPException(422, 'sign in with a JSON body {"token": ...}') from None
        token = body.token.strip()
        principal = auth.presented(request.scope, token)
        if principal is None:
            raise HTTPException(401, "wrong token")
        session_id, session = auth.sessions.open(digest(token), principal)
        response = JSONResponse(_view(principal, session.csrf))
        response.set_cookie(
            COOKIE,
            session_id,
            max_age=int(LIFETIME_SECONDS),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        request.state.principal = principal
        return response

    @api.get("/session", response_model=SessionView, include_in_schema=False)
    def current(request: Request) -> dict[str, Any]:
        """Who the cookie signs in as, and the CSRF token the page sends with changes (the cookie is HttpOnly)."""
        checked = auth.session(request.scope)
        if isinstance(checked, Refusal):
            raise HTTPException(checked.status, checked.message)
        session, principal = checked
        request.state.principal = principal
        return _view(principal, session.csrf)

    @api.delete("/session", status_code=204, include_in_schema=False)
    def sign_out(request: Request) -> Response:
        """Read-only sessions may end too (no read-only rule here); the CSRF header is still required (a change
        of the session). Without a live session there is nothing to end, and the cookie is cleared all the same."""
        checked = auth.session(request.scope)
        if isinstance(checked, Refusal) and checked.status == 403:
            raise HTTPException(checked.status, checked.message)
        if not isinstance(checked, Refusal):
            auth.sessions.close(request.cookies.get(COOKIE, ""))
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return api


def _view(principal: Principal, csrf: str | None) -> dict[str, Any]:
    return {"principal": principal.name, "read_only": principal.read_only, "csrf": csrf}
