"""Author-year labels for the book's bibliography page (a local Sphinx extension).

The chapters cite in author-year form ({cite:p}`kingma2015adam` reads
"(Kingma and Ba, 2015)", ``bibtex_reference_style: author_year``), but
sphinxcontrib-bibtex's default bibliography style labels entries ``[KB15]``.
This registers a pybtex formatting style, ``adamref_author_year``, that labels
each entry the way the text cites it ("Kingma and Ba, 2015"; "Sutskever et
al., 2013"; a letter after the year where two labels would coincide) and sorts by
author, year and title.  ``_config.yml`` loads this module through
``sphinx: local_extensions`` and selects the style with ``bibtex_default_style``,
as the sphinxcontrib-bibtex documentation shows for custom styles.
"""

from collections import Counter

import pybtex.plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


_LAST = pybtex.plugin.find_plugin("pybtex.style.names", "last")()


def _last_name(person) -> str:
    """A person's name as the in-text citations print it (pybtex's ``last`` style)."""
    return _LAST.format(person, True).format().render_as("text")


def author_year(entry) -> str:
    """The label the text's author-year citations give ``entry``.

    As sphinxcontrib-bibtex's ``author_year`` style: one author 'A, year', two
    'A and B, year', three or more 'A et al., year' (BibTeX's ``and others``
    counts as a name there too, so list at least three authors before it).
    """
    people = list(entry.persons.get("author") or entry.persons.get("editor") or [])
    names = [_last_name(p) for p in people]
    if not names:
        who = entry.fields.get("title", entry.key)
    elif len(names) <= 2:
        who = " and ".join(names)
    else:
        who = f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels as the text cites; 'a', 'b', ... after the year where two coincide."""

    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [author_year(e) for e in entries]
        repeated = Counter(labels)
        seen = Counter()
        for label in labels:
            if repeated[label] > 1:
                seen[label] += 1
                yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            else:
                yield label


class AuthorYearStyle(PlainStyle):
    """pybtex's plain style (sorted by author, year, title) with author-year labels."""

    default_label_style = AuthorYearLabelStyle


pybtex.plugin.register_plugin("pybtex.style.formatting", "adamref_author_year",
                              AuthorYearStyle)


def setup(app):
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
