"""Analytics for the operators: rollups the service keeps as it works (per business number and
hour, written by the Lua scripts that already run), read back as one ``AnalyticsReport``, and
drawn as SVG charts. See docs/ANALYTICS.md."""
