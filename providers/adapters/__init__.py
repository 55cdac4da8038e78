"""One adapter per wire protocol, pure (no ORM), behind the `Adapter` protocol in `types`."""
