"""The WebDAV front end: the archive namespace over HTTP on WsgiDAV + cheroot, drafts writable.

`service.WebDAVService` assembles it; `dandifs serve` runs it.  Requests pass through
`app.AccessLog` -> `guard.RequestGuard` (refusals needing no I/O) -> WsgiDAV with
`auth.TokenAuthenticator` and `provider.DandiProvider`, which reaches the async core
(`dandifs.core`: one core per caller's token, in a `CorePool`) through
`dandifs.core.portal.CorePortal`; `writes` holds what writing into drafts needs on this
side.  Errors are mapped to HTTP once, in `errors`.
"""
