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
  CHECK(p.Pause() == 0ms);
  p.OnRateLimited();
  CHECK(p.Pause() == 20ms);
  p.OnRateLimited();
  CHECK(p.Pause() == 24ms);
  p.OnRateLimited();
  CHECK(p.Pause() == 28ms);
  int steps = 3;
  while (!p.AtMax()) {
    p.OnRateLimited();
    ++steps;
    REQUIRE(steps < 200);
  }
  CHECK(p.Pause() == 25s);
  p.OnRateLimited();
  CHECK(p.Pause() == 25s);
  p.OnSuccess();
  CHECK(p.Pause() == 25s - 20ms);
  CHECK_FALSE(p.AtMax());
  Pacer q;
  q.OnRateLimited();
  q.OnSuccess();
  CHECK(q.Pause() == 0ms);
}
