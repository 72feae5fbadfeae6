"""What a class site reveals of its students. A site is public (GitHub Pages), so by default it
publishes no student ID, asks search engines not to index its pages, and withholds the files that
carry what it hides: the report PDFs (their cover prints the name and the ID the student gave) and a
config.toml whose [report] table names them. `--show-student-ids`, `--pseudonymise` and
`--allow-indexing` change that, each on the teacher's word.

A pseudonym is a keyed hash of the name (HMAC-SHA-256): the same name gets the same pseudonym on every
build made with the same key, and nobody without the key can tell whose it is by hashing a class list.
The key is LABBOOK_PSEUDONYM_KEY when set (a repository secret, for a site built on GitHub Actions),
else a random key that labbook keeps in the teacher's ~/.config/labbook/, never in the site.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from labbook.errors import UserError

KEY_VARIABLE = "LABBOOK_PSEUDONYM_KEY"


def pseudonym_key() -> bytes:
    """The key of this teacher's pseudonyms: LABBOOK_PSEUDONYM_KEY, else one made once and kept."""
    if os.environ.get(KEY_VARIABLE):
        return os.environ[KEY_VARIABLE].encode()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "labbook"
    path = base / "pseudonym.key"
    try:
        if not path.is_file():
            base.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as stream:
                stream.write(secrets.token_hex(32) + "\n")
        return path.read_text().strip().encode()
    except FileExistsError:          # made meanwhile by another build
        return path.read_text().strip().encode()
    except OSError as error:
        raise UserError(f"--pseudonymise: cannot keep the pseudonyms' key in {path} ({error.strerror}); "
                        f"set {KEY_VARIABLE} instead") from None


@dataclass(frozen=True)
class Privacy:
    show_student_ids: bool = False          # --show-student-ids
    pseudonym_key: bytes | None = None      # --pseudonymise: names become keyed hashes
    indexable: bool = False                 # --allow-indexing: no "noindex" on the pages

    def name(self, name: str) -> str:
        """A student's name as the site shows it."""
        if not name or self.pseudonym_key is None:
            return name
        return "S-" + hmac.new(self.pseudonym_key, name.encode(), hashlib.sha256).hexdigest()[:8].upper()

    def student_id(self, student_id: str) -> str:
        return student_id if self.show_student_ids else ""

    @property
    def reports_published(self) -> bool:
        """Whether the report PDFs may be offered: they print the name and the ID on their cover."""
        return self.show_student_ids and self.pseudonym_key is None

    def hides(self, name: str, student_id: str) -> bool:
        """Whether a file that names this student and ID must be withheld."""
        return bool(student_id and not self.show_student_ids or name and self.pseudonym_key is not None)

    def hides_seed(self, seed: int, student_ids) -> bool:
        """Whether the run's seed is the one `labbook run --student-id` derives from an ID the site hides:
        from a hash of the ID, so that anyone could find the ID back by trying a class's IDs."""
        from labbook.config import seed_for_student
        return not self.show_student_ids and any(seed == seed_for_student(sid) for sid in student_ids if sid)

    def redacted_config(self, config, seed_hidden: bool) -> str | None:
        """The config's text with what the site hides blanked ([report] student_id, the student's name
        under pseudonyms, a seed derived from the ID), rebuilt from the parsed config whatever the file's
        spelling; None when there is nothing to hide (the file is shown as written)."""
        from labbook.config import apply_overrides, to_toml
        blank = {key: "" for key, hidden in (("student_id", not self.show_student_ids and config.report.student_id),
                                             ("student", self.pseudonym_key is not None and config.report.student))
                 if hidden}
        if not blank and not seed_hidden:
            return None
        text = to_toml(apply_overrides(config, {"report": blank}))
        if seed_hidden:   # labbook's own layout: one `seed = N` line in [train]
            text = re.sub(r"(?m)^seed = .*$", 'seed = "…"  # derived from the student ID: not published', text)
        return text

    def fingerprint(self) -> str:
        """What the pages depend on, for the rebuild's state: never the key, nor a plain hash of it (a weak
        key could be guessed from one), but a keyed hash of a constant."""
        key = "none" if self.pseudonym_key is None else hmac.new(self.pseudonym_key, b"labbook site", hashlib.sha256).hexdigest()[:16]
        return f"ids={self.show_student_ids};key={key};index={self.indexable}"
