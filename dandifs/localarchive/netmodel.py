"""A model of what TCP over a long path costs, applied on the server side of the local archive.

On loopback a new connection, a TLS handshake and a large body cost next to nothing, so a
client that opens connections freely or reads a body cold looks as fast as one that keeps its
connections warm. On the internet they differ by round trips:

- a new TCP connection costs one round trip before its first request can arrive, and a TLS
  handshake one more (TLS 1.3) or two (TLS 1.2);
- every request costs one round trip;
- a body goes out in rounds of the sender's congestion window, one round trip apart: the window
  starts at 10 segments (RFC 6928) and grows by the bytes acknowledged each round trip (slow
  start: it doubles), up to a maximum; after an idle time of about one retransmission timeout
  (200 ms + RTT, RFC 6298's lower bound as Linux applies it) it starts again from 10 segments
  (RFC 2861), so a connection that sat idle is cold again.

`Window` is the pure bookkeeping of one direction of one connection; the relay asks it how many
bytes may go and how long to wait first.
"""

from __future__ import annotations

SEGMENT = 1448  # bytes of payload per TCP segment (1500-byte MTU, IPv4 with timestamps)
INITIAL_WINDOW = 10 * SEGMENT
DEFAULT_MAX_WINDOW = 4 << 20
MIN_RTO = 0.2  # seconds; the retransmission timeout is this plus the RTT (Linux's TCP_RTO_MIN)


def handshake_round_trips(tls_version: str | None) -> int:
    """Round trips of a full TLS handshake before the first request (0 without TLS)."""
    if tls_version is None:
        return 0
    return 1 if tls_version == "TLSv1.3" else 2


class Window:
    """The congestion window of one direction of one connection, in slow start.

    A message (one body) opens a round with `begin()`; `take()` hands out the bytes the current
    round still allows, or opens the next round one RTT after the current one began (when the
    bytes sent so far are acknowledged), grown by what the last round sent; `sent()` books what
    went out. Time is passed in, so schedules can be worked out without a clock.
    """

    def __init__(
        self, maximum: int = DEFAULT_MAX_WINDOW, initial: int = INITIAL_WINDOW, *,
        min_rto: float = MIN_RTO,
    ) -> None:
        self.initial = initial
        self.min_rto = min_rto  # idle this long plus an RTT and the window is cold again
        self.maximum = max(maximum, initial)
        self.size = initial
        self.rounds = 0  # rounds opened so far
        self._round_started = 0.0
        self._round_sent = 0
        self._last_sent: float | None = None

    def begin(self, now: float, rtt: float) -> None:
        """A new message starts sending at `now` (its request's round trip already waited)."""
        self._grow()
        if self._last_sent is not None and now - self._last_sent > self.min_rto + rtt:
            self.size = self.initial  # idle longer than an RTO: the window is cold again
        self._open(now)

    def take(self, wanted: int, now: float, rtt: float) -> tuple[int, float]:
        """How many of `wanted` bytes may go, and the seconds to wait before sending them."""
        left = self.size - self._round_sent
        if left > 0:
            return min(wanted, left), 0.0
        wait = max(0.0, self._round_started + rtt - now)
        self._grow()
        self._open(now + wait)
        return min(wanted, self.size), wait

    def sent(self, count: int, now: float) -> None:
        self._round_sent += count
        self._last_sent = now

    def schedule(self, total: int, rtt: float, start: float = 0.0) -> list[int]:
        """The bytes of each round of a `total`-byte message begun at `start`, sent instantly:
        the worked schedule of what `begin`, `take` and `sent` do."""
        self.begin(start, rtt)
        now, rounds, remaining = start, [0], total
        while remaining:
            count, wait = self.take(remaining, now, rtt)
            if wait:
                now += wait
                rounds.append(0)
            self.sent(count, now)
            rounds[-1] += count
            remaining -= count
        return rounds

    def _grow(self) -> None:
        """The bytes of the round just ended are acknowledged: the window grows by them."""
        self.size = min(self.maximum, self.size + self._round_sent)
        self._round_sent = 0

    def _open(self, now: float) -> None:
        self._round_started = now
        self._round_sent = 0
        self.rounds += 1
