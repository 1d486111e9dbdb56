"""benchmarks/task_corpora.py's code-summarisation corpus: what a pair is, and the held-out
package set that leaves out every function of the corpus it is held out from."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import task_corpora

CODE = '''
class A:
    @property
    def name(self):
        """Return the name of this thing.

        More text that is not the summary.
        """
        return self._name

    def only_doc(self):
        """Nothing else in here."""
'''


def test_a_pair_is_the_source_without_its_docstring_and_the_first_line():
    pairs = task_corpora._functions(Path("a.py"), CODE)
    assert pairs == [("@property\ndef name(self):\n    return self._name", "Return the name of this thing.")]


def test_held_out_packages_leave_out_the_corpus_functions(tmp_path):
    task_corpora.build_docstrings(tmp_path / "all", packages=("click",))
    pairs = [json.loads(line) for line in (tmp_path / "all" / "pairs.jsonl").read_text().splitlines()]
    sources = json.loads((tmp_path / "all" / "sources.json").read_text())
    assert len(pairs) > 50 and sources["packages"]["click"]["pairs"] == len(pairs)
    assert sources["packages"]["click"]["licence"] not in ("", "unknown")
    assert all(p["group"].startswith("site-packages/click/") for p in pairs)

    (tmp_path / "corpus").mkdir()  # a corpus that already holds the first 10 of them
    (tmp_path / "corpus" / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs[:10]))
    task_corpora.build_docstrings(tmp_path / "held", packages=("click",), exclude=tmp_path / "corpus")
    held = [json.loads(line) for line in (tmp_path / "held" / "pairs.jsonl").read_text().splitlines()]
    assert held == pairs[10:]


def test_bad_arguments_are_refused_before_anything_is_read_or_written(tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="--packages: 'no_such_package'"):
        task_corpora.build_docstrings(tmp_path / "out", packages=("click", "no_such_package"))
    with pytest.raises(SystemExit, match="--exclude: .* has no pairs.jsonl"):
        task_corpora.build_docstrings(tmp_path / "out", packages=("click",), exclude=tmp_path / "missing")
    assert not (tmp_path / "out").exists()
