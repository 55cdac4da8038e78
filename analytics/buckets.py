# Upper edges (ms) of the latency histogram kept in rollups; the last bucket is open-ended.
LATENCY_BUCKET_EDGES_MS = (100, 250, 500, 1000, 2500, 5000, 10000, 30000)
LATENCY_BUCKET_FIELDS = (
    *(f"latency_le_{edge}" for edge in LATENCY_BUCKET_EDGES_MS),
    "latency_gt_30000",
)
