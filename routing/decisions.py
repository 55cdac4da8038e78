"""`routing.decisions`, the documented path of the route decision (docs/routing.md): it lives in
`routing.pipeline.route` now, whose logger keeps the name `routing.decisions`."""

from routing.pipeline.route import route_decide

__all__ = ["route_decide"]
