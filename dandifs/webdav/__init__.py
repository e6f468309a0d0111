"""The WebDAV front end: the archive namespace over HTTP, read-only, on WsgiDAV + cheroot.

`service.WebDAVService` assembles it; `dandifs serve` runs it.  Requests pass through
`app.AccessLog` -> `guard.RequestGuard` (refusals needing no I/O) -> WsgiDAV with
`auth.TokenAuthenticator` and `provider.DandiProvider`, which reaches the async core
(`dandifs.core`: one core per caller's token, in a `CorePool`) through
`dandifs.core.portal.CorePortal`.  Errors are mapped to HTTP once, in `errors`.
"""
