"""File-extension to media-type mapping for static file serving.

A fixed built-in table rather than :mod:`mimetypes`, because that module reads the host's
``/etc/mime.types`` and so gives different answers on different machines; a server's
Content-Type must not depend on where it is deployed.  Text types carry
``charset=utf-8`` so browsers do not guess (and cannot be tricked into another charset).
"""

from __future__ import annotations

__all__ = ["MIME_TYPES", "guess_type"]

_UTF8 = "; charset=utf-8"

MIME_TYPES: dict[str, str] = {
    # text and web
    "html": "text/html" + _UTF8,
    "htm": "text/html" + _UTF8,
    "shtml": "text/html" + _UTF8,
    "xhtml": "application/xhtml+xml" + _UTF8,
    "css": "text/css" + _UTF8,
    "js": "text/javascript" + _UTF8,
    "mjs": "text/javascript" + _UTF8,
    "cjs": "text/javascript" + _UTF8,
    "json": "application/json" + _UTF8,
    "map": "application/json" + _UTF8,
    "jsonld": "application/ld+json" + _UTF8,
    "webmanifest": "application/manifest+json" + _UTF8,
    "xml": "application/xml" + _UTF8,
    "xsl": "application/xml" + _UTF8,
    "txt": "text/plain" + _UTF8,
    "text": "text/plain" + _UTF8,
    "log": "text/plain" + _UTF8,
    "conf": "text/plain" + _UTF8,
    "ini": "text/plain" + _UTF8,
    "csv": "text/csv" + _UTF8,
    "tsv": "text/tab-separated-values" + _UTF8,
    "md": "text/markdown" + _UTF8,
    "markdown": "text/markdown" + _UTF8,
    "ics": "text/calendar" + _UTF8,
    "vtt": "text/vtt" + _UTF8,
    "yaml": "application/yaml" + _UTF8,
    "yml": "application/yaml" + _UTF8,
    "svg": "image/svg+xml" + _UTF8,
    "rss": "application/rss+xml" + _UTF8,
    "atom": "application/atom+xml" + _UTF8,
    "wasm": "application/wasm",
    # images
    "png": "image/png",
    "apng": "image/apng",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "jpe": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "avif": "image/avif",
    "heic": "image/heic",
    "ico": "image/vnd.microsoft.icon",
    "bmp": "image/bmp",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "jxl": "image/jxl",
    # audio
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
    "oga": "audio/ogg",
    "opus": "audio/ogg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mid": "audio/midi",
    "midi": "audio/midi",
    "weba": "audio/webm",
    # video
    "mp4": "video/mp4",
    "m4v": "video/mp4",
    "webm": "video/webm",
    "ogg": "audio/ogg",
    "ogv": "video/ogg",
    "mov": "video/quicktime",
    "mpeg": "video/mpeg",
    "mpg": "video/mpeg",
    "avi": "video/x-msvideo",
    "mkv": "video/x-matroska",
    "3gp": "video/3gpp",
    "ts": "video/mp2t",
    "m3u8": "application/vnd.apple.mpegurl",
    "flv": "video/x-flv",
    # fonts
    "woff": "font/woff",
    "woff2": "font/woff2",
    "ttf": "font/ttf",
    "otf": "font/otf",
    "eot": "application/vnd.ms-fontobject",
    # documents
    "pdf": "application/pdf",
    "rtf": "application/rtf",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt": "application/vnd.ms-powerpoint",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odp": "application/vnd.oasis.opendocument.presentation",
    "epub": "application/epub+zip",
    # archives and binaries
    "zip": "application/zip",
    "gz": "application/gzip",
    "tgz": "application/gzip",
    "bz2": "application/x-bzip2",
    "xz": "application/x-xz",
    "zst": "application/zstd",
    "7z": "application/x-7z-compressed",
    "rar": "application/vnd.rar",
    "tar": "application/x-tar",
    "jar": "application/java-archive",
    "war": "application/java-archive",
    "ear": "application/java-archive",
    "deb": "application/vnd.debian.binary-package",
    "rpm": "application/x-rpm",
    "dmg": "application/x-apple-diskimage",
    "apk": "application/vnd.android.package-archive",
    "exe": "application/vnd.microsoft.portable-executable",
    "dll": "application/vnd.microsoft.portable-executable",
    "msi": "application/x-msdownload",
    "bin": "application/octet-stream",
    "iso": "application/x-iso9660-image",
    "img": "application/octet-stream",
}


def guess_type(
    path: str,
    table: dict[str, str] | None = None,
    default: str = "application/octet-stream",
) -> str:
    """Media type for ``path`` by the extension after its last '.', case-insensitively.

    Only the final path segment is looked at, so a dot in a directory name
    (``/v1.2/README``) does not masquerade as an extension.  Unknown extensions get
    ``default``; octet-stream makes browsers download rather than sniff and render.
    """
    cut = max(path.rfind("/"), path.rfind("\\"))
    dot = path.rfind(".")
    if dot <= cut + 1:  # no dot in the last segment, or a leading-dot name like ".bashrc"
        return default
    ext = path[dot + 1 :]
    types = MIME_TYPES if table is None else table
    found = types.get(ext)
    if found is None:
        found = types.get(ext.lower())
    return default if found is None else found
