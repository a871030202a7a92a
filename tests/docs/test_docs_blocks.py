"""Every code block in ``docs/*.md`` is executed (see ``docs_blocks`` for what each language
means and for the directives), so the documentation cannot drift from the code.

One test per page, blocks in order in a scratch checkout with its own SQLite store; a page
with a block marked ``slow`` (a dbt build, a model load) is marked ``slow``. Skipped blocks are
counted and printed in the terminal summary with their reasons, and may be at most a sixth of
all code blocks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from docs_blocks import (
    REPORTS,
    DocsError,
    PageRunner,
    console_parts,
    doc_pages,
    output_matches,
    parse_blocks,
    settings_file_name,
)

MAX_SKIPPED_SHARE = 1 / 6


def _page_param(path: Path) -> object:
    blocks = parse_blocks(path.read_text(encoding="utf-8"), path.name)
    slow = any("slow" in b.directives and b.skip_reason is None for b in blocks)
    return pytest.param(path, id=path.name, marks=[pytest.mark.slow] if slow else [])


PAGES = [_page_param(p) for p in doc_pages()]


@pytest.mark.parametrize("path", PAGES)
def test_every_block_of_the_page_runs(path: Path, tmp_path: Path) -> None:
    blocks = parse_blocks(path.read_text(encoding="utf-8"), path.name)
    report = PageRunner(path.name, tmp_path).run(blocks)
    REPORTS.append(report.line())
    runnable = report.executed + len(report.skipped)
    assert report.executed > 0 or runnable == 0, f"{path.name}: nothing executed"


def test_skipped_blocks_are_few() -> None:
    """Over all pages, at most a sixth of the blocks that are code may be skipped (each with
    its reason, which the reader sees in the page source)."""
    blocks = [b for p in doc_pages() for b in parse_blocks(p.read_text(encoding="utf-8"), p.name)]
    code = [b for b in blocks if b.lang not in ("", "text")]
    skipped = [f"{b.page}:{b.line} {b.skip_reason}" for b in code if b.skip_reason is not None]
    assert len(skipped) <= MAX_SKIPPED_SHARE * len(code), "\n".join(skipped)


def test_the_user_guide_pages_exist() -> None:
    names = {p.name for p in doc_pages()}
    assert {"quickstart.md", "concepts.md", "policies.md", "operations.md", "api.md",
            "troubleshooting.md"} <= names


# -- the block reader itself ----------------------------------------------------------------------

PAGE = """# Title

<!-- docs-test: skip needs a cluster -->
```bash
kubectl apply -f lacuna.yaml
```

- a list item with a block:

  <!-- docs-test: file conf/lacuna.yaml -->
  ```yaml
  environment: development
  nested:
    key: 1
  ```

```
a diagram
```
"""


def test_blocks_carry_language_line_directives_and_dedented_text() -> None:
    skip, settings, diagram = parse_blocks(PAGE, "page.md")
    assert (skip.lang, skip.line, skip.skip_reason) == ("bash", 4, "needs a cluster")
    assert settings.directives == {"file": "conf/lacuna.yaml"}
    assert settings.text == "environment: development\nnested:\n  key: 1\n"
    assert (diagram.lang, diagram.index) == ("", 3)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("```toml\na = 1\n```\n", "no runner for ```toml"),
        ("```bash\necho\n", "never closed"),
        ("<!-- docs-test: skip -->\n```bash\necho\n```\n", "needs a reason"),
        ("<!-- docs-test: maybe -->\n```bash\necho\n```\n", "unknown docs-test directive"),
        ("<!-- docs-test: exit 3 -->\nprose\n```bash\necho\n```\n", "not followed by a block"),
    ],
)
def test_unreadable_pages_are_refused_with_the_line(text: str, problem: str) -> None:
    with pytest.raises(DocsError, match=problem.replace("`", "\\`").replace("(", "\\(")):
        parse_blocks(text, "page.md")


def test_console_blocks_split_commands_and_expected_output() -> None:
    commands, expected = console_parts(
        "$ lacuna check --action export \\\n    --source a.csv\nDENY\n...\n$ echo ok\nok\n")
    assert commands == ["lacuna check --action export \\\n    --source a.csv", "echo ok"]
    assert expected == ["DENY", "ok"]


def test_expected_output_allows_elided_text_inside_a_line() -> None:
    printed = "audit chain 'default' verified: 19 records, head 17d5e69d"
    assert output_matches("audit chain 'default' verified: ... records, head ...", printed)
    assert not output_matches("audit chain 'default' broken at ...", printed)


def test_settings_files_are_recognised_by_directive_or_leading_comment() -> None:
    by_comment, plain = parse_blocks(
        "```yaml\n# lacuna.yaml\nllm_model: m\n```\n```yaml\nmodels: {}\n```\n", "p.md")
    assert settings_file_name(by_comment, by_comment.text) == "lacuna.yaml"
    assert settings_file_name(plain, plain.text) is None


def test_a_failing_block_names_page_line_and_output(tmp_path: Path) -> None:
    blocks = parse_blocks("```bash\necho before\nfalse\necho after\n```\n", "broken.md")
    with pytest.raises(AssertionError, match=r"broken\.md:1 \(block 1, bash\) exited 1"):
        PageRunner("broken.md", tmp_path).run(blocks)


def test_a_settings_block_with_an_unknown_key_fails(tmp_path: Path) -> None:
    blocks = parse_blocks("```yaml\n# lacuna.yaml\nllm_modle: m\n```\n", "typo.md")
    with pytest.raises(AssertionError, match="llm_modle"):
        PageRunner("typo.md", tmp_path).run(blocks)


def test_a_documented_input_document_must_match_build_input(tmp_path: Path) -> None:
    wrong = ('```json\n{"action": "export", "source": {"tier": "PUBLIC"}, "destination": null,'
             ' "user": "a", "context": {}, "lineage": {"upstream": []}}\n```\n')
    with pytest.raises(AssertionError, match="input.source: documented keys"):
        PageRunner("schema.md", tmp_path).run(parse_blocks(wrong, "schema.md"))


def test_policy_data_is_merged_over_the_shipped_bundle_and_compiled(tmp_path: Path) -> None:
    good = '```json\n{"lacuna": {"config": {"scratch": {"environments": ["dev"]}}}}\n```\n'
    report = PageRunner("data.md", tmp_path).run(parse_blocks(good, "data.md"))
    assert report.executed == 1
    broken = '```json\n{"lacuna": {"config": {"enabled_policies": ["no_such_policy"]}}}\n```\n'
    with pytest.raises(AssertionError):
        PageRunner("data.md", tmp_path / "b").run(parse_blocks(broken, "data.md"))


def test_rego_blocks_must_compile(tmp_path: Path) -> None:
    bad = "```rego\npackage x\n\nallow if {\n```\n"
    with pytest.raises(AssertionError, match="does not compile"):
        PageRunner("rego.md", tmp_path).run(parse_blocks(bad, "rego.md"))
