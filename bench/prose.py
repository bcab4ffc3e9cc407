"""The fixed text of docs/benchmarks.md; bench.report adds the figures around it.

Nothing here quotes a figure: the text says what is measured and why the numbers come out the
way they do, and stays true whatever a run measures.
"""

INTRO = """\
What Opsion's own work on an AI Insights query costs, beside the alternatives. Users pay for
Claude's latency (seconds per answer), so the pipeline's own work must be a rounding error beside
it and must stay flat as the query history grows. The harness is `bench/`; `make bench` runs it.

**The figures were taken on a 2-core shared machine** (load averages below), where the servers,
the fake, the database and the load generator all compete for the same two cores. Absolute
times are inflated and noisy; comparisons are therefore ratios of
alternatives measured side by side, interleaved round by round, so a burst of load from elsewhere
hits all of them alike. Each figure is the median over rounds, with the interquartile range in
brackets."""

HEADLINE = """\
✅ / ❌ compare the median with the target. The rows "without the commit flush" repeat the
measurement with the session's flush switched off (PostgreSQL `synchronous_commit = off`, SQLite
`synchronous = OFF`). As deployed, PostgreSQL flushes its log at every commit and SQLite (WAL,
`synchronous = NORMAL`) at checkpoints. The flush waits for this machine's shared disk, costs the
same for every variant and is the noisiest part of a write; without it the ratio isolates what a design controls,
round trips and work per decision. Targets are met when the durable figure, as deployed, meets
them; both are shown."""

PIPELINE = """\
`POST /api/v1/orgs/<slug>/insights/queries` with a Bearer token (authentication, membership, key
resolution with decryption, the rolling limit, the query row, the answer, the outcome) against
`POST /bench/baseline`, which parses the body and calls the same fake Anthropic server through the
same `insights.claude.stream_answer`. The baseline lives in `bench/urls.py`, a bench-only URLconf
selected by `bench.settings`; it is never in production URLs. Both run under the same gunicorn
(sync workers) against `tests/fake_anthropic.py` run standalone, loaded by closed-loop clients in
a separate process, the variants alternating round by round. The limit is raised out of reach
(`INSIGHTS_BYOM_LIMIT=10⁹`) and each round's rows are deleted after it.

The fake answers at once, so this is the strictest comparison there is. On two shared cores the
servers, the fake, PostgreSQL and the clients all compete for the CPU, so throughput measures the
machine time each request costs; "machine time over baseline" (1/throughput of the real endpoint
minus 1/throughput of the baseline) is Opsion's own work per request, whatever the bottleneck.
The "CPU per request, by process" table says where that machine time goes: the CPU time each
process used during a run (read from `/proc`, children included, so PostgreSQL's backends and
WAL writer count), divided by the requests served. Its last row, real minus baseline, is Opsion's
own work measured directly rather than inferred from throughput.

Where that work goes: four SQL statements on PostgreSQL (the token, the membership joined with its
organisation and stored key, the limiter's one-call function committed before Anthropic is called,
the outcome after) and seven on SQLite (the limiter there is BEGIN IMMEDIATE, count, insert,
COMMIT), plus the API's authentication and validation and the key's decryption (microseconds).
Timing each step of one request in-process (CPU time around each call; a profiler inflates the
ORM's many small calls several-fold, so its shares mislead) puts nearly all of the app's share in
the database layer, and most of that in the ORM's Python rather than the round trip: building a
statement's SQL and reading its row into models costs several times what the driver and the
database do for it: about 0.8–1.3 ms each for the token's and the membership's lookups, 0.6–0.8 ms
for the outcome's UPDATE, where the same SQL run directly costs 0.05–0.15 ms. django-ninja's
routing, validation and serialisation come to a small part, the middleware costs both endpoints
the same, and the SDK's own work reads a little dearer inside the real request than alone (the
rest of the request has displaced it from the CPU's caches). On PostgreSQL the server's share is
mostly the limiter's function (lock, count, insert, commit) and the outcome's commit; planning the
two lookups is a small part of it.

**The ≥ 0.80 target is not met, and here is why.** With the fake answering at once and the SDK
client reusing one connection pool per process (below), the baseline's whole cost is the "All"
figure of its CPU row, and 0.80 allows Opsion a quarter of that: well under a millisecond to a
couple of milliseconds of CPU, depending on the machine, every process counted, for authentication,
the organisation check, an exact durable limit and the query log. On PostgreSQL the database
server's share alone, committing the limit's row and the outcome, about fills the allowance before
any of the app's Python. Those four statements are the minimum the product's promises need (a
per-organisation row lock and a durable log before Claude is called, the outcome after). Writing the
ORM's statements by hand was tried: the token's lookup as one `raw()` statement and the outcome's
UPDATE built once saved about 1 ms of the app's CPU per request, a few hundredths on the ratio
(measured side by side under load: 0.35× → 0.39× on PostgreSQL, 0.54× → 0.57× on SQLite), and the
membership (three models) would save perhaps another. That still leaves SQLite over the allowance,
PostgreSQL's server share fills it on its own, and every hand-written statement is one the ORM no
longer checks against the models; only dropping one of the promises would get there. Neither is
worth it against what follows, so the ORM stays. The changes that did move the figure are all in
place: the limiter in one round trip on PostgreSQL and with its count written out once on SQLite,
the key joined into the membership lookup, unique lookups without `first()`'s ORDER BY, no re-reads
of what the request already holds, persistent connections by default on both databases (compare the
CONN_MAX_AGE=0 rows) and one shared HTTP pool for the SDK. Measured and left out: prepared
statements on PostgreSQL (psycopg's server-side binding) save the planning of the two lookups, a
small part of the server's share, at the price of transaction-mode connection poolers (which Django
keeps them off for) and of server-side binding typing some ORM statements differently.

What it means for users is the paced comparison below each table: the fake streams its answer over
about a second, gunicorn runs as the README deploys it, and the real endpoint's median latency is
compared with the baseline's, round by round. The difference has been five to thirty milliseconds
from run to run and machine to machine (the headline gives this run's), more than the CPU figures alone: the limiter's
commit waits for the disk before Claude is called, the outcome's commit waits again before the
response ends, and in a threaded worker one request's Python waits for another's. Claude's real
answers take several seconds, so that is of the order of 1 % of what the user waits, and throughput
at this pace is the baseline's."""

DECISION = """\
`ratelimit.acquire` alone (lock, count, insert, commit), in one process on one persistent
connection, against (a) django-ratelimit's `is_ratelimited` on Redis (fixed window, incrementing;
the usual choice, but not exact: a fixed window lets up to twice the limit through across a window
boundary, and its counter is not the query log) and (b) the floor: one single-row INSERT of the
same row into the same table, committed on its own, which any design that logs each query pays.
The first design (`bench/legacy.py`) runs beside the current one. Each round's rows are deleted
after it, so the window never grows during the run.

The query row is written anyway (it is the usage history the API and the console show), so a
limiter's real price is its time over the floor; django-ratelimit's is all of its time, on top of
that insert, and a second system to run. On SQLite a write costs a fraction of a millisecond, so
the ORM's own Python is most of a decision: the first design built its window count through the
ORM (about a millisecond and a half of CPU here, three times the whole floor insert), and the
current one runs the same statement written out once (`insights/ratelimit.py`, checked against the
ORM's by a test) under BEGIN IMMEDIATE, with the insert left to the ORM like the floor's. As
deployed (WAL, `synchronous = NORMAL`) a commit appends to the log without waiting for the disk,
so the SQLite durable figures sit close to those without the flush."""

HISTORY = """\
Three organisations get 1 k, 100 k and 1 M rows of history spread over the past year: older than
the window, so they do not count, but they sit in the same index. They are interleaved in the
table with 300 k rows of 300 other organisations, and each of the three also has 100 rows inside
the window. The three are measured side by side. The rows are generated by the database itself in
one `INSERT … SELECT` (nothing crosses the wire), followed by `VACUUM (ANALYZE)` on PostgreSQL and
`ANALYZE` on SQLite, as autovacuum would.

The window count is a range scan on `insight_org_created (organisation_id, created_at)` starting
at now minus the window: its cost follows the rows inside the window, which the limit bounds, not
the history. The plans are `EXPLAIN (ANALYZE, BUFFERS)` (PostgreSQL) or `EXPLAIN QUERY PLAN`
(SQLite) of the window count for the largest organisation: `peek`'s query (the function's count has
the same predicate). With `COUNT(*)` PostgreSQL can answer from the index alone (Index Only Scan);
the first design's `COUNT(id)` had to fetch every counted row from the table. Any heap fetches in
the index-only plan are for rows on pages written since the last vacuum, as the window's newest rows
always are. SQLite's index entries carry the rowid (the `id`), so both counts are covering there."""

CONCURRENCY = """\
Decisions per second from 1, 8 and 32 client threads, each with its own connection, calling
`acquire` for a fixed time: all on one organisation, or spread over 32 (with one client both
layouts are one organisation, a control). One organisation's
decisions are serialised by its row lock, which is held until the commit, including the commit's
log flush; its throughput is therefore bounded by the flush latency, and extra clients only queue
(and cost the CPU that wakes them). Spread over organisations, the locks never meet and PostgreSQL
groups their commits into shared flushes: per-organisation locks do not serialise different
organisations. The one-organisation bound does not matter in practice: an organisation may send 20
or 200 queries an hour. The clients share one Python process (one GIL) on two shared cores, so the
absolute figures are a floor on what the database can do.

**SQLite:** `transaction_mode = "IMMEDIATE"` takes the database-wide write lock at the start of
every decision, so every writer, whichever organisation it counts for, is serialised: spreading
over organisations cannot help, and with many writers most of the time goes to waiting in SQLite's
busy handler. That is the price of the exact count on SQLite, the single-process embedded default;
PostgreSQL is the database for concurrent use."""

ENCRYPTION = """\
`orgs.crypto` (MultiFernet over `FIELD_ENCRYPTION_KEYS`): encrypt and decrypt per call, and decrypt
when the ciphertext's key is second in the list, as it is between adding a new key and running the
rotation (MultiFernet tries the new key first and pays for one failed HMAC check). Either way it is
microseconds, invisible beside a query. `manage.py rotate_encryption_keys` over 10 k organisations
with a stored key each: batches of 200 rows, each one transaction that locks its rows, skips those
already on the first key and re-encrypts and updates the others one UPDATE per row, so the statements rather than
Fernet set its cost (the bench alternates two keys so that every run moves every row). It runs once per key
rotation; at this rate even a large deployment rotates in well under a minute, and a key save waits for one batch
at most. On SQLite the run now pauses between batches for as long as each took, so that writes waiting for its
single write lock get in: that doubles its time there, and the time measured here includes it."""

DESIGN = """\
**Before** (`bench/legacy.py`, as first written): an ORM transaction of `BEGIN`, `SELECT … FOR
UPDATE` on the organisation, the window count, `INSERT … RETURNING` and `COMMIT`: five round trips
on PostgreSQL, with the organisation's lock held across four of them. The count was `COUNT(id)`,
which needs every counted row from the table.

**Now** (`insights/ratelimit.py` and migrations `insights/0002_ratelimit_acquire_function`, `0004`, `0007` and `0011`):
on PostgreSQL, one call in autocommit, `SELECT … FROM insights_ratelimit_acquire(org, limit, window,
row, plans, key, asker)`: one round trip, one implicit transaction. The plpgsql function locks the organisation row
(`FOR UPDATE`, reading its plan), checks that the asker is still an active member and that the key in force is the
one the caller chose (an index lookup each; on SQLite, in the count's statement), reads the decision's time once
the lock is held (`clock_timestamp()`), counts the rows newer than that time minus the window (`COUNT(*)`,
`MIN(created_at)`), and inserts the row only when the count is under the limit; it returns the
count, the oldest counted time, the database's now, and the new row's id and `created_at`.

Why a function and not one statement: a statement's snapshot is taken before it waits for a lock,
so an `INSERT … SELECT … WHERE (SELECT count(*) …) < limit` that locks in a CTE would count without
the row committed by the request it waited for, and at 19 of 20 both would pass. Inside a VOLATILE
plpgsql function each statement takes a new snapshot under READ COMMITTED, so the count, taken
after the lock, sees it. The count and the new row use the same time, read after the lock, so every
decision counts all committed rows newer than its own row's time minus the window: the window
stays exact, and a decision that waited for the lock is stamped when it was made, not when it
arrived. The row's columns come from the model (`_row_json`: every concrete field except the
primary key and database defaults, prepared by the field as the ORM would), so a new model field
needs no change to the function.

`acquire`, `peek`, `Window` and `RateLimited` keep their signatures and their behaviour: the same
count, the same refusal and Retry-After, the same returned row (saved, with its id and
`created_at`) and window; `tests/insights` passes on both databases. SQLite keeps its
transaction, which BEGIN IMMEDIATE serialises, with the window count written out once instead of
built by the ORM on every decision (the same statement; a test checks they agree), and `peek` and
that path now count with `COUNT(*)`. The exactness
run in section 4 (32 racing clients, a limit of 50, exactly 50 let through) repeats on every bench."""

ADMIN_LOG = """\
Measured by hand with `bench/admin_log.py` (not part of `make bench`: loading the log takes minutes), on
PostgreSQL 15, two cores shared with other work, so every figure is noisy; the changelist times are medians of 5
requests. The log is what `prune_insight_queries --older-than 90d` leaves: 1 M queries over 90 days from 50
organisations, 3.5 % failed, answers of about 1.5 KB stored in the row (a 1.9 GB table). Both indexes the table
had lead with the organisation, so a filter on anything else counted its rows (Django admin counts every filtered
list, for its pages) by reading the whole table.

| Filter | Changelist before | Count before | Changelist after | Count after |
|---|---|---|---|---|
| none | 321 ms | 82 ms | 306 ms | 98 ms |
| error code (key rejected, 5 k rows) | 1,373 ms | 917 ms (parallel seq scan) | 228 ms | 1 ms (index only) |
| error code + past 7 days | 839 ms | 355 ms | 165 ms | 5 ms |
| date: past 7 days (87 k rows) | 309 ms | 54 ms | 193 ms | 45 ms |
| date: today | 410 ms | 53 ms | 139 ms | 48 ms |
| outcome: failed (35 k rows) | 1,532 ms | 1,241 ms | 1,144 ms | 886 ms |
| how it ended: cut short (29 k rows) | 958 ms | 648 ms | 969 ms | 538 ms |
| key: platform (200 k rows) | 928 ms | 789 ms | 883 ms | 655 ms |

Pages themselves are fast throughout (under 30 ms): admin orders by `-id`, so the newest page walks the primary
key backwards until it has 100 rows. The date filter needs no index of its own: its count is an index-only scan
of `insight_org_created` (its second column bounds the range in every organisation's part), tens of ms.

**Added:** `insight_failed_by_code`, `(error_code, id) WHERE error_code <> ''` (migration 0012, built
CONCURRENTLY), 2 MB here: the error-code filter's count is an index-only scan of the failed rows and its page a
backward scan of one code's. A query is inserted with no error code and an answered one keeps none, so it adds no
entry for them, and their outcome's UPDATE, which leaves `error_code` as it was, stays heap-only. One asked query's
writes (the limiter's insert, then its answered outcome, each committed, `synchronous_commit` off), 5 rounds of
400: 4.3 ms median with no extra index, 2.8 ms with it and 6.6 ms with a full `(error_code, id)` index on every
row; the machine's noise is larger than the partial index's cost, the full one's is not.

**Not added:** the outcome, how-it-ended and key filters still count by reading the table (0.5 to 1.2 s a page at
this size). `outcome` and `stop_reason` change from pending to answered in every query's outcome UPDATE, so any
index naming them, even only in its condition, makes that UPDATE write a new entry in every index of the table
for every query; `key_source` never changes, but an index on it is an entry per insert for a filter that splits
the log in two. Staff looking for failures use the error-code filter, which now answers at once; if the others are
needed on a log this size, a count capped by admin's paginator (it shows "more than N") is the next step, not an
index."""

METHOD = """\
`make bench` runs `python -m bench`, which runs `bench.suite` once per database, each in its own
process: PostgreSQL on a dedicated database (`BENCH_DATABASE_URL`, default `opsion_bench`, dropped,
re-created and migrated on every run) and SQLite on a temporary file (as the settings open it:
IMMEDIATE transactions, WAL journal, synchronous = NORMAL). The settings are the production ones (`bench.settings` only
adds the baseline URL) with the Makefile's test environment (DEBUG off), and django-ratelimit's
cache is Redis at `BENCH_REDIS_URL`. Rounds, calls per round and sizes are in `bench/suite.py`;
`make bench BENCH_ARGS=--quick` shrinks them to seconds for work on the harness. The raw results of
the last run are in `artifacts/benchmarks.json`. Benchmarks are never part of the test suite.

Every comparison runs its variants in the same rounds, rotating their order each round; a ratio is
computed per round, then summarised like any figure (median, IQR). Times come from
`time.perf_counter` around batches of back-to-back calls (per-decision figures are batch means)."""

TEXT = {
    "intro": INTRO,
    "headline": HEADLINE,
    "pipeline": PIPELINE,
    "decision": DECISION,
    "history": HISTORY,
    "concurrency": CONCURRENCY,
    "encryption": ENCRYPTION,
    "design": DESIGN,
    "admin_log": ADMIN_LOG,
    "method": METHOD,
}
