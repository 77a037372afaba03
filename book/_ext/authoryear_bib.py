"""Author-year citations that tell apart two works with the same authors and year.

sphinxcontrib-bibtex's ``author_year`` referencing style prints the year field as it is,
so CoOp and CoCoOp (same four authors, both 2022) both read "Zhou et al., 2022", and the
bibliography beside them is labelled with alpha keys such as [ZYLL22a] that no citation
shows. This extension registers:

* a pybtex label style, ``authoryear``: "Surname, 2021", "A and B, 2021" or
  "Surname et al., 2021" (the ``key`` field stands in for missing authors, "n.d." for a
  missing year), with a, b, ... appended to the year when two cited entries would
  otherwise share a label, in bibliography order;
* a pybtex formatting style, ``authoryear``: pybtex's ``unsrt`` entries with those labels,
  sorted by author (or key), year and title, for ``bibtex_default_style``;
* a referencing style, ``author_year_labels``, for ``bibtex_reference_style``: the
  author-year style whose author and year come from that label, so a citation reads
  exactly like the bibliography label it links to ("Zhou et al., 2022a").
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pybtex.plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting.author_year_title import SortingStyle as AuthorYearTitleSorting
from pybtex.style.template import node
from sphinxcontrib.bibtex.plugin import register_plugin
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle
from sphinxcontrib.bibtex.style.referencing.basic_author_year import (
    BasicAuthorYearParentheticalReferenceStyle,
    BasicAuthorYearTextualReferenceStyle,
)
from sphinxcontrib.bibtex.style.referencing.extra_author import ExtraAuthorReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_empty import ExtraEmptyReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_label import ExtraLabelReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_year import ExtraYearReferenceStyle
from sphinxcontrib.bibtex.style.template import join, join2, post_text, pre_text, reference

LABEL_SEP = ", "  # between the author part and the year part of a label


def _persons(entry):
    return entry.persons.get("author") or entry.persons.get("editor") or []


def author_part(entry) -> str:
    """'Surname', 'A and B' or 'Surname et al.'; the key field, or the title, without persons."""
    persons = _persons(entry)
    surnames = [" ".join(p.prelast_names + p.last_names) for p in persons]
    if len(surnames) == 1:
        return surnames[0]
    if len(surnames) == 2:
        return f"{surnames[0]} and {surnames[1]}"
    if surnames:
        return f"{surnames[0]} et al."
    return entry.fields.get("key") or entry.fields.get("title", entry.key)


def _plain(text: str) -> str:
    """BibTeX braces only protect case; they are not part of a label."""
    return text.replace("{", "").replace("}", "")


class AuthorYearLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        bases = [(_plain(author_part(e)), e.fields.get("year", "n.d.")) for e in sorted_entries]
        count = Counter(bases)
        seen: Counter = Counter()
        for author, year in bases:
            suffix = ""
            if count[author, year] > 1:
                suffix = chr(ord("a") + seen[author, year])
                seen[author, year] += 1
            yield f"{author}{LABEL_SEP}{year}{suffix}"


class AuthorKeyYearTitleSorting(AuthorYearTitleSorting):
    """pybtex's author-year-title order, with the key field (then the title) standing in
    for missing authors, so an entry without persons sorts where its label says."""

    def sorting_key(self, entry):
        author_key, year, title = super().sorting_key(entry)
        if not _persons(entry):
            author_key = _plain(author_part(entry)).lower()
        return author_key, year, title


class AuthorYearStyle(UnsrtStyle):
    default_label_style = "authoryear"
    default_sorting_style = "author_key_year_title"


@node
def label_part(children, data, part):
    """The author part or the year part (with its a/b suffix) of the entry's label."""
    assert not children
    author, _, year = data["formatted_entry"].label.rpartition(LABEL_SEP)
    return Text(author if part == "author" else year)


@dataclass
class _Parenthetical(BasicAuthorYearParentheticalReferenceStyle):
    def inner(self, role_name):
        author = (self.person.author_or_editor_or_title(full=True) if "s" in role_name
                  else label_part(part="author"))
        return join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
            pre_text, reference[join(sep=self.author_year_sep)[author, label_part(part="year")]], post_text]


@dataclass
class _Textual(BasicAuthorYearTextualReferenceStyle):
    def inner(self, role_name):
        author = (self.person.author_or_editor_or_title(full=True) if "s" in role_name
                  else label_part(part="author"))
        return join(sep=self.text_reference_sep)[
            author,
            join[self.bracket.left,
                 join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
                     pre_text, reference[label_part(part="year")], post_text],
                 self.bracket.right]]


@dataclass
class _Year(ExtraYearReferenceStyle):
    def inner(self, role_name):
        return reference[label_part(part="year")]


@dataclass
class AuthorYearLabelReferenceStyle(AuthorYearReferenceStyle):
    """sphinxcontrib-bibtex's author_year style, with author and year read from the label."""

    def __post_init__(self):
        self.styles.extend([
            _Parenthetical(bracket=self.bracket_parenthetical, person=self.person,
                           author_year_sep=self.author_year_sep, pre_text_sep=self.pre_text_sep,
                           post_text_sep=self.post_text_sep),
            _Textual(bracket=self.bracket_textual, person=self.person,
                     text_reference_sep=self.text_reference_sep, pre_text_sep=self.pre_text_sep,
                     post_text_sep=self.post_text_sep),
            ExtraAuthorReferenceStyle(bracket=self.bracket_author, person=self.person),
            ExtraLabelReferenceStyle(bracket=self.bracket_label),
            _Year(bracket=self.bracket_year),
            ExtraEmptyReferenceStyle(),
        ])
        # GroupReferenceStyle's __post_init__, skipping AuthorYearReferenceStyle's own list
        super(AuthorYearReferenceStyle, self).__post_init__()


def setup(app):
    pybtex.plugin.register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabelStyle)
    pybtex.plugin.register_plugin("pybtex.style.sorting", "author_key_year_title", AuthorKeyYearTitleSorting)
    pybtex.plugin.register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
    register_plugin("sphinxcontrib.bibtex.style.referencing", "author_year_labels",
                    AuthorYearLabelReferenceStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
