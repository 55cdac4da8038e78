"""Who may see which rows. Staff see everything; anyone else sees rows they made, directly or
through one of their API keys.

API keys live in routing, which analytics never imports. Routing registers a resolver at start-up
(`key_owner_resolver_register`) that returns the ids of a user's keys; until one is registered,
non-staff users see the rows written with their user id only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Q

KeyIdsOfUser = Callable[[int], tuple[int, ...]]
_key_resolvers: list[KeyIdsOfUser] = []


def key_owner_resolver_register(resolver: KeyIdsOfUser) -> None:
    if resolver not in _key_resolvers:
        _key_resolvers.append(resolver)


def key_owner_resolver_unregister(resolver: KeyIdsOfUser) -> None:
    if resolver in _key_resolvers:
        _key_resolvers.remove(resolver)


@dataclass(frozen=True)
class Scope:
    """`user_id` None means unrestricted (staff)."""

    user_id: int | None
    api_key_ids: tuple[int, ...] = ()

    @property
    def unrestricted(self) -> bool:
        return self.user_id is None

    def q(self) -> Q:
        if self.user_id is None:
            return Q()
        visible = Q(user_id=self.user_id)
        if self.api_key_ids:
            visible |= Q(api_key_id__in=self.api_key_ids)
        return visible


EVERYTHING = Scope(user_id=None)


def scope_for(*, user_id: int, is_staff: bool) -> Scope:
    if is_staff:
        return EVERYTHING
    keys: set[int] = set()
    for resolver in _key_resolvers:
        keys.update(resolver(user_id))
    return Scope(user_id=user_id, api_key_ids=tuple(sorted(keys)))
