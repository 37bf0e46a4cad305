"""Stream-safe output scanning: text is released only once no pattern can still straddle its end."""

from __future__ import annotations

from hoplon.llm.firewall import Firewall, OutputContext, ScanResult

__all__ = ["StreamGuard"]


class StreamGuard:
    """Accumulates streamed output, rescans it, and releases the redacted text with a hold-back margin.

    A secret, canary or markdown image split across chunk boundaries is still seen whole, because the last
    ``holdback`` characters are never released before the next scan (or the end of the stream). Scans run
    once at least ``scan_every`` new characters have arrived, which bounds the cost on long answers.

    Args:
        firewall: the firewall whose output policy applies.
        context: the conversation's system prompt, canary and pseudonymizer.
        holdback: characters kept back (longer than any single pattern the scanners match).
        scan_every: minimum new characters between scans.
    """

    def __init__(
        self, firewall: Firewall, context: OutputContext, *, holdback: int = 256, scan_every: int = 32
    ) -> None:
        self._fw = firewall
        self._ctx = context
        self._holdback = holdback
        self._scan_every = scan_every
        self._acc: list[str] = []
        self._len = 0
        self._scanned_len = 0
        self._sent = 0
        self.blocked = False
        self.result: ScanResult | None = None

    @property
    def text(self) -> str:
        return "".join(self._acc)

    def feed(self, delta: str) -> str:
        """Add ``delta``; return the text that is now safe to send ("" while holding back or once blocked)."""
        if self.blocked or not delta:
            return ""
        self._acc.append(delta)
        self._len += len(delta)
        if self._len - self._scanned_len < self._scan_every:
            return ""
        return self._release(final=False)

    def finish(self) -> str:
        """End of stream: scan everything and return the rest (``""`` if blocked)."""
        if self.blocked:
            return ""
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        full = self.text
        self._acc = [full]
        self._scanned_len = self._len
        result = self._fw.scan_output(full, context=self._ctx)
        self.result = result
        if result.verdict == "block" or result.text is None:
            self.blocked = True
            return ""
        shown = result.text
        end = len(shown) if final else max(self._sent, len(shown) - self._holdback)
        out = shown[self._sent : end]
        self._sent = end
        return out
