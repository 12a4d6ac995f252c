"""Drives the service through a Python client generated from openapi/openapi.json.

Run by scripts/openapi-client.sh, which generates the `reader_reactions_client` package, puts it
on PYTHONPATH and starts the service on a fresh database:

    python openapi_client_check.py BASE_URL STATS_TOKEN ADMIN_TOKEN

Every call goes through the generated client (its request building, its parsing of each answer
into the documented model), and every answer is checked: status, counts, the caller's reaction,
what erasing removed. Exits non-zero on the first failure.

Not called: `GET /v1/articles/{article_id}/events` (Server-Sent Events). The generated function
reads the whole body as text, and the stream never ends by design; tests/api/live.rs covers it.
"""

import datetime
import importlib
import pkgutil
import sys

import reader_reactions_client
from reader_reactions_client import AuthenticatedClient, Client
from reader_reactions_client.api.operations import healthz, readyz
from reader_reactions_client.api.reactions import (
    delete_reaction,
    get_article_reactions,
    get_batch_reactions,
    put_reaction,
)
from reader_reactions_client.api.stats import export, timeseries, top, totals, trending
from reader_reactions_client.api.visitors import erase_me
from reader_reactions_client.models import (
    BatchSummaries,
    Bucket,
    Erased,
    Health,
    Problem,
    Reaction,
    ReactionSummary,
    SetReaction,
    TimeSeries,
    TopArticles,
    TrendingArticles,
    TrendingWindow,
    WindowTotals,
)

# A slash and a space: the client must percent-encode the id into one path segment.
ARTICLE = "2026/11/30/openapi client check"
OTHER = "openapi-client-untouched"
ALICE = "openapi-client-alice"
BOB = "openapi-client-bob"
KEYS = ("like", "dislike", "love", "funny", "angry", "sad", "wow")

checks = 0


def check(condition, what):
    global checks
    if not condition:
        raise AssertionError(what)
    checks += 1


def ok(response, model, what):
    """The parsed answer of a 200, checked to be the documented model."""
    check(response.status_code == 200, f"{what}: status {response.status_code}: {response.content[:300]!r}")
    check(isinstance(response.parsed, model), f"{what}: parsed as {type(response.parsed).__name__}")
    return response.parsed


def counts_of(counts):
    return {key: getattr(counts, key) for key in KEYS}


def expect_summary(summary, what, viewer, **counts):
    expected = {key: counts.get(key, 0) for key in KEYS}
    check(summary.article_id == ARTICLE, f"{what}: article_id {summary.article_id!r}")
    check(counts_of(summary.counts) == expected, f"{what}: counts {counts_of(summary.counts)} != {expected}")
    check(summary.total == sum(expected.values()), f"{what}: total {summary.total}")
    check(summary.viewer_reaction == viewer, f"{what}: viewer_reaction {summary.viewer_reaction!r} != {viewer!r}")


def main(base_url, stats_token, admin_token):
    # Every module of the generated package imports: no construct produced broken code.
    for module in pkgutil.walk_packages(reader_reactions_client.__path__, "reader_reactions_client."):
        importlib.import_module(module.name)

    timeout = 10.0
    # Undocumented statuses raise instead of parsing to None.
    client = Client(base_url=base_url, raise_on_unexpected_status=True, timeout=timeout)
    stats = AuthenticatedClient(base_url=base_url, token=stats_token, raise_on_unexpected_status=True, timeout=timeout)
    admin = AuthenticatedClient(base_url=base_url, token=admin_token, raise_on_unexpected_status=True, timeout=timeout)

    check(ok(healthz.sync_detailed(client=client), Health, "healthz").status == "ok", "healthz says ok")
    check(ok(readyz.sync_detailed(client=client), Health, "readyz").status == "ready", "readyz says ready")

    # Set.
    answer = put_reaction.sync_detailed(ARTICLE, client=client, body=SetReaction(Reaction.LIKE), x_visitor_id=ALICE)
    expect_summary(ok(answer, ReactionSummary, "alice sets like"), "alice sets like", Reaction.LIKE, like=1)
    answer = put_reaction.sync_detailed(ARTICLE, client=client, body=SetReaction(Reaction.LOVE), x_visitor_id=BOB)
    expect_summary(ok(answer, ReactionSummary, "bob sets love"), "bob sets love", Reaction.LOVE, like=1, love=1)

    # Read one article: the caller's own reaction, or none when anonymous.
    answer = get_article_reactions.sync_detailed(ARTICLE, client=client, x_visitor_id=ALICE)
    expect_summary(ok(answer, ReactionSummary, "alice reads"), "alice reads", Reaction.LIKE, like=1, love=1)
    answer = get_article_reactions.sync_detailed(ARTICLE, client=client)
    expect_summary(ok(answer, ReactionSummary, "anonymous read"), "anonymous read", None, like=1, love=1)

    # Batch read: one summary per id, in request order.
    answer = get_batch_reactions.sync_detailed(client=client, article_id=[OTHER, ARTICLE], x_visitor_id=BOB)
    batch = ok(answer, BatchSummaries, "batch read").articles
    check([s.article_id for s in batch] == [OTHER, ARTICLE], f"batch order: {[s.article_id for s in batch]}")
    check(batch[0].total == 0 and batch[0].viewer_reaction is None, "an untouched article is all zeros")
    expect_summary(batch[1], "batch read", Reaction.LOVE, like=1, love=1)

    # Switch: alice's like becomes angry.
    answer = put_reaction.sync_detailed(ARTICLE, client=client, body=SetReaction(Reaction.ANGRY), x_visitor_id=ALICE)
    expect_summary(ok(answer, ReactionSummary, "alice switches"), "alice switches", Reaction.ANGRY, angry=1, love=1)

    # Undo: bob's love is gone.
    answer = delete_reaction.sync_detailed(ARTICLE, client=client, x_visitor_id=BOB)
    expect_summary(ok(answer, ReactionSummary, "bob undoes"), "bob undoes", None, angry=1)

    # Stats: what is held now, over the default window (the last 24 hours).
    leaders = ok(top.sync_detailed(client=stats), TopArticles, "stats top")
    check([(a.article_id, a.count) for a in leaders.articles] == [(ARTICLE, 1)], f"top: {leaders.articles}")
    angry = ok(top.sync_detailed(client=stats, reaction=Reaction.ANGRY), TopArticles, "stats top angry")
    check(angry.reaction == Reaction.ANGRY and len(angry.articles) == 1, f"top angry: {angry}")
    window = ok(totals.sync_detailed(client=stats), WindowTotals, "stats totals")
    check(counts_of(window.counts) == dict.fromkeys(KEYS, 0) | {"angry": 1}, f"totals: {window.counts}")
    check(window.total == 1, f"totals total: {window.total}")
    check(window.since < window.until, "totals: the window is not empty")

    # Trending: with TRENDING_MIN_NETWORKS=1 (where the setting exists) the article may be listed;
    # either way the answer is a ranked list of positive scores.
    ranked = ok(trending.sync_detailed(client=stats, window=TrendingWindow("1h")), TrendingArticles, "trending")
    check(isinstance(ranked.articles, list), "trending: articles is a list")
    check(all(a.score > 0 for a in ranked.articles), f"trending: scores above zero: {ranked.articles}")
    check(all(a.article_id == ARTICLE for a in ranked.articles), f"trending: only our article: {ranked.articles}")
    print(f"trending lists {len(ranked.articles)} article(s)")

    # The article's time series, hour by hour over the last 24 hours.
    now = datetime.datetime.now(datetime.timezone.utc)
    series = timeseries.sync_detailed(
        ARTICLE, client=stats, bucket=Bucket.HOUR, since=now - datetime.timedelta(hours=24), until=now
    )
    series = ok(series, TimeSeries, "time series")
    check(series.article_id == ARTICLE and series.bucket == Bucket.HOUR, f"time series: {series.article_id}")
    check(len(series.buckets) in (24, 25), f"time series: {len(series.buckets)} hourly buckets")
    check(sum(b.counts.angry for b in series.buckets) == 1, "time series: alice's angry in one bucket")
    check(sum(b.total for b in series.buckets) == 1, "time series: nothing else")

    # The CSV export (text/csv) needs the admin token.
    csv = ok(export.sync_detailed(client=admin), str, "export")
    check(csv.splitlines()[0] == "article_id,reaction,count", f"export header: {csv.splitlines()[:1]}")
    check(f"{ARTICLE},angry,1" in csv.splitlines(), f"export rows: {csv.splitlines()[1:]}")

    # Erase: only an X-Visitor-Id erases; without it, a problem+json 400 that erases nothing.
    refused = erase_me.sync_detailed(client=client)
    check(refused.status_code == 400 and isinstance(refused.parsed, Problem), f"erase without id: {refused.status_code}")
    check(refused.parsed.status == 400, f"erase without id: problem {refused.parsed}")
    erased = ok(erase_me.sync_detailed(client=client, x_visitor_id=ALICE), Erased, "alice erases")
    check(erased.removed == 1, f"alice erased {erased.removed} reactions")
    answer = get_article_reactions.sync_detailed(ARTICLE, client=client, x_visitor_id=ALICE)
    expect_summary(ok(answer, ReactionSummary, "after erasing"), "after erasing", None)
    erased = ok(erase_me.sync_detailed(client=client, x_visitor_id=ALICE), Erased, "alice erases again")
    check(erased.removed == 0, f"a second erase removed {erased.removed}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: openapi_client_check.py BASE_URL STATS_TOKEN ADMIN_TOKEN")
    try:
        main(*sys.argv[1:])
    except Exception as error:  # noqa: BLE001 - any failure is reported and fails the run
        print(f"FAILED after {checks} checks: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"the generated client: {checks} checks passed")
