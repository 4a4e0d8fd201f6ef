"""SIPp scenario parts that the SIP tests, the demo and the benchmark share."""

from __future__ import annotations


def answer(status: str, *, then: str | None = None, headers: tuple[str, ...] = ()) -> str:
    """A SIPp ``<send>`` answering the request just received with ``status`` (``200 OK``)
    and any further ``headers``, going on at label ``then`` if given."""
    jump = "" if then is None else f' next="{then}"'
    extra = "".join(f"\n    {header}" for header in headers)
    return f"""<send{jump}><![CDATA[
    SIP/2.0 {status}
    [last_Via:]
    [last_From:]
    [last_To:];tag=[pid]SIPpTag[call_number]
    [last_Call-ID:]
    [last_CSeq:]{extra}
    Content-Length: 0
  ]]></send>"""
