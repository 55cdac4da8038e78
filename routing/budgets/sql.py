"""The statements budgets send to Postgres as prepared statements (`routing.budgets.store`'s
`PreparedStore`): a hold on one budget or on several, the settlement or release of one
reservation, and of a group of them. Each is one statement and one round trip, and each commits
without waiting for its WAL flush when it is its own transaction (`RELAXED_COMMIT`). SQLite runs
the same steps through the ORM instead (`OrmStore`).
"""

from __future__ import annotations

# Holds and settlements commit without waiting for their WAL flush (`synchronous_commit` off
# for their own transaction only). Locking and visibility are unchanged, so concurrent holds
# still cannot pass a limit together. In exchange a period row is never locked through a disk
# flush (~2 ms on an ordinary disk), which capped every budget at a few hundred requests a
# second and made each request wait for the one before. What a Postgres crash can take is the
# flush window (wal_writer_delay, 200 ms by default): a lost settlement is redone from its
# request's log row, which is written synchronously first (`budget_reservations_expire`); a
# lost hold belongs to a request whose settlement could not be recorded at that moment either.
# Only a statement that is its own transaction is relaxed: inside a caller's transaction the
# setting would reach the caller's other writes too.
RELAXED_COMMIT = (
    "(SELECT CASE WHEN %(relaxed)s THEN set_config('synchronous_commit', 'off', true)"
    " ELSE 'off' END) = 'off'"
)

# The common case, one budget, in one statement and one round trip: the conditional UPDATE
# and the insert of its hold are atomic together, and a refused UPDATE inserts nothing.
HOLD_ONE_SQL = f"""
WITH held AS (
    UPDATE routing_budgetperiod SET reserved_usd = reserved_usd + %(amount)s
    WHERE id = %(period_id)s
      AND (NOT %(hard_stop)s OR spent_usd + reserved_usd + %(amount)s <= limit_usd)
      AND {RELAXED_COMMIT}
    RETURNING id
)
INSERT INTO routing_budgetreservation (request_id, period_id, amount_usd, state, created_at)
SELECT %(request_id)s, id, %(amount)s, 'held', %(now)s FROM held
RETURNING id
"""


# Several budgets in one statement: lock their period rows in id order (so two such requests
# cannot deadlock), and hold on all of them only if no hard-stop one lacks room. Returns the
# new holds, or the refusing periods.
HOLD_MANY_SQL = f"""
WITH locked AS MATERIALIZED (
    SELECT id, spent_usd, reserved_usd, limit_usd FROM routing_budgetperiod
    WHERE id = ANY(%(period_ids)s) AND {RELAXED_COMMIT} ORDER BY id FOR UPDATE
), refused AS (
    SELECT id FROM locked
    WHERE id = ANY(%(hard_ids)s) AND spent_usd + reserved_usd + %(amount)s > limit_usd
), held AS (
    UPDATE routing_budgetperiod AS p SET reserved_usd = p.reserved_usd + %(amount)s
    FROM locked WHERE p.id = locked.id AND NOT EXISTS (SELECT 1 FROM refused)
    RETURNING p.id
), lines AS (
    INSERT INTO routing_budgetreservation (request_id, period_id, amount_usd, state, created_at)
    SELECT %(request_id)s, id, %(amount)s, 'held', %(now)s FROM held
    RETURNING id, period_id
)
SELECT TRUE, id, period_id FROM lines
UNION ALL
SELECT FALSE, NULL, id FROM refused
"""


# Settling in one statement: claim the holds (only those still held, which makes settling
# idempotent) and move their amounts from reserved to spent. Several holds also lock their
# period rows in id order first, as admission locks them, so two requests settling the same
# budgets cannot deadlock; a single hold cannot deadlock with anything and skips that lock.
_CLAIM_SQL = f"""
WITH claimed AS (
    UPDATE routing_budgetreservation
    SET state = %(state)s, actual_usd = %(spent)s, settled_at = %(now)s
    WHERE id = ANY(%(reservation_ids)s) AND state = 'held' AND {RELAXED_COMMIT}
    RETURNING period_id, amount_usd
)"""
_LOCK_SQL = """, locked AS MATERIALIZED (
    SELECT id FROM routing_budgetperiod
    WHERE id = ANY(%(period_ids)s) ORDER BY id FOR UPDATE
)"""
_SPEND_SQL = """
UPDATE routing_budgetperiod AS p
SET spent_usd = p.spent_usd + %(spent)s, reserved_usd = p.reserved_usd - claimed.amount_usd
FROM claimed {join}WHERE p.id = claimed.period_id
RETURNING p.id, p.spent_usd, p.soft_alerted_at IS NULL
"""
CLOSE_ONE_SQL = _CLAIM_SQL + _SPEND_SQL.format(join="")
CLOSE_SQL = (
    _CLAIM_SQL
    + _LOCK_SQL
    + _SPEND_SQL.format(join="JOIN locked ON locked.id = claimed.period_id\n")
)


# A group: one row per hold (reservation, its new state, what it spent), claimed together;
# each period is updated once, by the sums of its claimed holds.
CLOSE_MANY_SQL = f"""
WITH closing AS (
    SELECT * FROM unnest(%(reservation_ids)s::bigint[], %(states)s::text[], %(spent)s::numeric[])
        AS c(reservation_id, state, spent)
), claimed AS (
    UPDATE routing_budgetreservation AS r
    SET state = c.state, actual_usd = c.spent, settled_at = %(now)s
    FROM closing AS c
    WHERE r.id = c.reservation_id AND r.state = 'held' AND {RELAXED_COMMIT}
    RETURNING r.period_id, r.amount_usd, c.spent
), totals AS (
    SELECT period_id, sum(spent) AS spent, sum(amount_usd) AS amount
    FROM claimed GROUP BY period_id
){_LOCK_SQL}
UPDATE routing_budgetperiod AS p
SET spent_usd = p.spent_usd + totals.spent, reserved_usd = p.reserved_usd - totals.amount
FROM totals JOIN locked ON locked.id = totals.period_id
WHERE p.id = totals.period_id
RETURNING p.id, p.spent_usd, p.soft_alerted_at IS NULL
"""
