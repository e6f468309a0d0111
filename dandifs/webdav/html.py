"""The folder listing for people and for `wget -r`.

Every link is relative, folders end in `/` and files link to their own URL under this
server, so `wget -r -np -nH --cut-dirs=N` mirrors a version exactly: parent and breadcrumb
links point upwards and the metadata links point outside the tree, and `-np` skips both.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape
from urllib.parse import quote

from dandifs.core import Entry
from dandifs.namespace.routes import split_segments

METADATA_ROUTE = ".metadata"
UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:70rem;
     padding:0 1rem;color:#1d2733}
h1{font-size:1.25rem;font-weight:500;word-break:break-all}
h1 a{color:#2861a8;text-decoration:none}h1 a:hover{text-decoration:underline}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th{text-align:left;border-bottom:2px solid #d4dbe3;padding:.4rem .6rem;color:#55606d}
td{border-bottom:1px solid #eef1f4;padding:.35rem .6rem;white-space:nowrap}
td.name{white-space:normal;word-break:break-all}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr:hover td{background:#f6f8fa}
a{color:#2861a8}td.dir a{font-weight:600}
.muted{color:#8a96a3}footer{margin-top:1rem;color:#6b7682;font-size:.85rem}
"""


def human_size(size: int) -> str:
    """Binary units with three significant digits: 0 B, 1023 B, 1.00 KiB, 15.3 MiB, 208 MiB."""
    value = float(size)
    for unit in UNITS:
        if value < 1024 or unit == UNITS[-1]:
            break
        value /= 1024
    if unit == "B":
        return f"{size} B"
    digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:.{digits}f} {unit}"


def utc_time(moment: datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def link_to(name: str, is_folder: bool) -> str:
    """A relative link to a child: percent-encoded so `:`, `#`, `?` and `%` stay in the path."""
    href = quote(name, safe="")
    return f"{href}/" if is_folder else href


def breadcrumbs(path: str) -> str:
    segments = split_segments(path)
    depth = len(segments)
    crumbs = [f'<a href="{"../" * depth or "./"}">dandi</a>']
    for index, segment in enumerate(segments, start=1):
        up = depth - index
        href = "../" * up if up else "./"
        crumbs.append(f'<a href="{href}">{escape(segment)}</a>')
    return " / ".join(crumbs) + " /"


def metadata_link(path: str, entry: Entry) -> str:
    """A relative link to `/.metadata/<path>` (outside the mirrored tree), or nothing."""
    if entry.asset_id is None and entry.version is None:
        return ""
    depth = len(split_segments(path))
    target = "/".join(quote(segment, safe="") for segment in split_segments(entry.path))
    return f'<a href="{"../" * depth}{METADATA_ROUTE}/{target}">metadata</a>'


def row(path: str, entry: Entry) -> str:
    name = entry.name
    size = human_size(entry.size) if entry.size or not entry.is_folder else ""
    count = "" if entry.file_count is None else f"{entry.file_count:,}"
    css = "dir" if entry.is_folder else "file"
    label = escape(name + ("/" if entry.is_folder else ""))
    return (
        f'<tr><td class="name {css}"><a href="{link_to(name, entry.is_folder)}">{label}</a></td>'
        f'<td class="num" title="{entry.size} bytes">{size}</td>'
        f'<td class="num">{count}</td>'
        f"<td>{utc_time(entry.mtime)}</td>"
        f"<td>{metadata_link(path, entry)}</td></tr>"
    )


def sort_key(entry: Entry) -> tuple[bool, str]:
    return (not entry.is_folder, entry.name)


def render_listing(path: str, entries: Sequence[Entry], *, title: str = "DANDI Archive") -> str:
    """The HTML page for the folder at `path` (which ends in `/`)."""
    children = sorted(entries, key=sort_key)
    parent = '<tr><td class="name dir"><a href="../">../</a></td><td></td><td></td><td></td><td></td></tr>'
    rows = [parent] if split_segments(path) else []
    rows += [row(path, entry) for entry in children]
    folders = sum(entry.is_folder for entry in children)
    total = sum(entry.size for entry in children)
    summary = (
        f"{folders:,} folder{'s' * (folders != 1)}, "
        f"{len(children) - folders:,} file{'s' * (len(children) - folders != 1)}, "
        f"{human_size(total)} in total"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(path)} — {escape(title)}</title><style>{STYLE}</style></head>
<body><h1>{breadcrumbs(path)}</h1>
<table><thead><tr><th>Name</th><th class="num">Size</th><th class="num">Files</th>
<th>Modified (UTC)</th><th></th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<footer>{summary}. Times are UTC; sizes of folders are the archive's totals.</footer>
</body></html>
"""
