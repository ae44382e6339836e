"""The head-end's REST API: the framework (:mod:`.framework`), and one module of routes per domain,
each exporting a ``router`` that the application's root router includes."""

from __future__ import annotations

from .framework import ApiError, ApiResource, ApiSite, Page, Request, Response, Router, page_of

__all__ = ["ApiError", "ApiResource", "ApiSite", "Page", "Request", "Response", "Router", "page_of"]
