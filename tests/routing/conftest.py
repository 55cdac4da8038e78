from tests.providers.conftest import (  # noqa: F401  (fixtures shared with the adapter tests)
    _close_http_client,
    local_model_url,
    upstream,
    upstream_server,
)
