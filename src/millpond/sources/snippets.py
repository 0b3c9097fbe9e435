"""The code a user pastes into a web page to send a source's events to millpond.

One text per SDK and form, with this server's address and the source's write key
filled in, so the CLI (``millpond sources snippet``), the API and the console show the
same thing. Each is the SDK's own documented set-up with only the addresses changed:

- ``segment``: ``@segment/analytics-next``; ``cdnURL`` is millpond (settings come from
  ``/v1/projects/{writeKey}/settings``), ``apiHost``/``protocol`` name millpond's ``/v1``;
- ``customerio``: ``@customerio/cdp-analytics-browser``; ``cdnURL`` is
  ``<millpond>/customerio``, and the settings answer routes the events;
- ``rudderstack``: ``@rudderstack/analytics-js``, its *bundled* build (the default build
  loads plugins from RudderStack's CDN); ``configUrl`` and ``dataPlaneUrl`` are millpond.

The ``snippet`` form loads the SDK's browser build of the same pinned version the tests
run, from the npm registry's CDN (jsDelivr); copy that file to your own host to serve
it yourself. The ``npm`` form is for pages built with a bundler.
"""

from __future__ import annotations

from millpond.collector.public_url import Address
from millpond.sources.store import Source

SDKS = ("segment", "customerio", "rudderstack")
FORMS = ("snippet", "npm")
#: The versions ``tests/sdk/browser`` runs in Chromium; snippets load exactly these.
VERSIONS = {"segment": "1.84.3", "customerio": "0.5.11", "rudderstack": "3.34.1"}
_CDN = "https://cdn.jsdelivr.net/npm"


def snippet(source: Source, address: Address, sdk: str, form: str = "snippet") -> str:
    """The text to paste for ``sdk`` (one of :data:`SDKS`) in ``form`` (:data:`FORMS`)."""
    wk, base, host, protocol = source.write_key, address.url, address.host, address.protocol
    version = VERSIONS[sdk]
    if sdk == "segment":
        load = (f'{{ writeKey: "{wk}", cdnURL: "{base}" }},\n'
                f'  {{ integrations: {{ "Segment.io": {{ apiHost: "{host}/v1", '
                f'protocol: "{protocol}" }} }} }}')
        if form == "npm":
            return ("// npm install @segment/analytics-next\n"
                    'import { AnalyticsBrowser } from "@segment/analytics-next";\n\n'
                    f"export const analytics = AnalyticsBrowser.load(\n  {load},\n);\n"
                    "analytics.page();\n")
        return (f'<script src="{_CDN}/@segment/analytics-next@{version}/dist/umd/index.js">'
                "</script>\n<script>\n"
                f"  window.analytics = AnalyticsNext.AnalyticsBrowser.load(\n  {load});\n"
                "  analytics.page();\n</script>\n")
    if sdk == "customerio":
        load = f'{{ writeKey: "{wk}", cdnURL: "{base}/customerio" }}'
        if form == "npm":
            return ("// npm install @customerio/cdp-analytics-browser\n"
                    'import { AnalyticsBrowser } from "@customerio/cdp-analytics-browser";\n\n'
                    f"export const analytics = AnalyticsBrowser.load({load});\n"
                    "analytics.page();\n")
        return (f'<script src="{_CDN}/@customerio/cdp-analytics-browser@{version}/dist/umd/'
                'index.js"></script>\n<script>\n'
                f"  window.analytics = AnalyticsNext.AnalyticsBrowser.load({load});\n"
                "  analytics.page();\n</script>\n")
    if sdk == "rudderstack":
        load = f'"{wk}", "{base}", {{ configUrl: "{base}" }}'
        if form == "npm":
            return ("// npm install @rudderstack/analytics-js\n"
                    'import { RudderAnalytics } from "@rudderstack/analytics-js/bundled";\n\n'
                    "export const analytics = new RudderAnalytics();\n"
                    f"analytics.load({load});\nanalytics.page();\n")
        return (f'<script src="{_CDN}/@rudderstack/analytics-js@{version}/dist/npm/modern/'
                'bundled/umd/index.js"></script>\n<script>\n'
                "  window.rudderanalytics = new rudderanalytics.RudderAnalytics();\n"
                f"  rudderanalytics.load({load});\n"
                "  rudderanalytics.page();\n</script>\n")
    raise ValueError(f"sdk must be one of {', '.join(SDKS)}; got {sdk!r}")
