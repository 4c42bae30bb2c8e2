"""The window's views: the map, the neighbours browser, the training and runs panels, and the
curve and health docks. Each view reads the shared ``Session`` and redraws on its signals."""
import html


def wrapped_tooltip(text: str) -> str:
    """A tooltip as rich text, which Qt word-wraps; plain text is shown one line per line at full
    length (a parameter's help ran across 1170 pixels). Line breaks are kept."""
    return "<qt>" + "<br>".join(html.escape(line) for line in text.split("\n")) + "</qt>"
