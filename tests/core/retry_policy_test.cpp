#include <doctest/doctest.h>

#include <vector>

#include "couchrepd/retry_policy.h"

using namespace couchrepd;
using namespace std::chrono_literals;

namespace {
Error ConnectionError() { return Error::Temporary("connection_failed", "refused"); }
}  // namespace

TEST_CASE("request retries wait 0.25 s doubling, five times") {
  TimePoint t0{};
  RetryPlan plan(RetrySettings{}, t0);
  std::vector<Duration> waits;
  TimePoint now = t0;
  while (auto w = plan.NextWait(ConnectionError(), now)) {
    waits.push_back(*w);
    now += *w;
  }
  CHECK(waits == std::vector<Duration>{250ms, 500ms, 1000ms, 2000ms, 4000ms});
}

TEST_CASE("request retries stop at the total budget and cap one wait") {
  RetrySettings s;
  s.retries = 100;
  s.max_wait = 5min;
  TimePoint t0{};
  RetryPlan plan(s, t0);
  TimePoint now = t0;
  Duration total{0};
  int n = 0;
  while (auto w = plan.NextWait(ConnectionError(), now)) {
    now += *w;
    total += *w;
    ++n;
  }
  // 0.25+0.5+...+32 = 63.75 s > 60 s, so the 8th retry (32 s) is not taken.
  CHECK(n == 7);
  CHECK(total == 31750ms);
  CHECK(total <= 60s);

  RetrySettings capped;
  capped.retries = 10;
  capped.max_wait = 1s;
  capped.budget = 1h;
  RetryPlan plan2(capped, t0);
  std::vector<Duration> waits;
  now = t0;
  while (auto w = plan2.NextWait(ConnectionError(), now)) {
    waits.push_back(*w);
    now += *w;
  }
  CHECK(waits.size() == 10);
  CHECK(waits.back() == 1s);
}

TEST_CASE("only connection errors, 408 and 5xx are retried") {
  TimePoint t0{};
  for (int status : {408, 500, 502, 503}) {
    RetryPlan plan(RetrySettings{}, t0);
    CHECK(plan.NextWait(Error::Temporary("x", "y", status), t0).has_value());
  }
  for (int status : {400, 401, 403, 404, 409, 412, 413, 429}) {
    CAPTURE(status);
    RetryPlan plan(RetrySettings{}, t0);
    CHECK_FALSE(plan.NextWait(Error::Permanent("x", "y", status), t0).has_value());
  }
  RetryPlan plan(RetrySettings{}, t0);
  CHECK_FALSE(plan.NextWait(Error::Permanent("bad_url", "nope"), t0).has_value());
}

TEST_CASE("the 429 pacer grows by 1.2 from 20 ms to 25 s and shrinks on success") {
  Pacer p;
  TimePoint t{};
  CHECK(p.Pause() == 0ms);
  p.OnRateLimited(t);
  CHECK(p.Pause() == 20ms);
  p.OnRateLimited(t += 100ms);
  CHECK(p.Pause() == 24ms);
  p.OnRateLimited(t += 100ms);
  CHECK(p.Pause() == 28ms);
  int steps = 3;
  while (!p.AtMax()) {
    p.OnRateLimited(t += 100ms);
    ++steps;
    REQUIRE(steps < 200);
  }
  CHECK(p.Pause() == 25s);
  p.OnRateLimited(t += 100ms);
  CHECK(p.Pause() == 25s);
  // Above 10 s a success takes 50 steps of `decrease` off (1 s), above 1 s
  // 5 (100 ms), above 100 ms 2 (40 ms), below that one (20 ms).
  p.OnSuccess(t += 100ms);
  CHECK(p.Pause() == 24s);
  CHECK_FALSE(p.AtMax());
  Pacer q;
  q.OnRateLimited(t);
  q.OnSuccess(t += 100ms);
  CHECK(q.Pause() == 0ms);
}

TEST_CASE("the 429 pacer: the success step depends on the pause; updates 80 ms apart count") {
  Pacer p;
  TimePoint t{};
  auto raise_to = [&](Duration at_least) {
    while (p.Pause() < at_least) p.OnRateLimited(t += 100ms);
  };
  raise_to(1500ms);
  Duration before = p.Pause();
  p.OnSuccess(t += 100ms);
  CHECK(p.Pause() == before - 100ms);
  before = p.Pause();
  p.OnSuccess(t += 50ms);  // less than 80 ms after the last update: ignored
  CHECK(p.Pause() == before);
  p.OnRateLimited(t += 10ms);
  CHECK(p.Pause() == before);
  Pacer small;
  while (small.Pause() < 150ms) small.OnRateLimited(t += 100ms);
  before = small.Pause();
  small.OnSuccess(t += 100ms);
  CHECK(small.Pause() == before - 40ms);
}

TEST_CASE("the 429 pacer decays by 2 ms per ms of quiet beyond 1 s, so a storm's end is quick") {
  // After a long storm the pause is seconds long; a request succeeding a
  // whole pause later takes twice the quiet time beyond 1 s off at once.
  Pacer p;
  TimePoint t{};
  while (p.Pause() < 3s) p.OnRateLimited(t += 100ms);
  Duration before = p.Pause();
  p.OnSuccess(t += 1500ms);  // 500 ms beyond the threshold: 1 s off, then the 100 ms step
  CHECK(p.Pause() == before - 1s - 100ms);
  p.OnSuccess(t += p.Pause() + 1s);  // quiet longer than half the pause beyond 1 s: gone
  CHECK(p.Pause() == 0ms);
  // Quiet time alone does not cut a pause that 429s keep raising.
  Pacer q;
  while (q.Pause() < 3s) q.OnRateLimited(t += 100ms);
  before = q.Pause();
  q.OnRateLimited(t += 5s);
  CHECK(q.Pause() > before);
}
