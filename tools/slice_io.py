"""What the slice-joining tools (combine_ppl.py, combine_zeroshot.py) share: one-line errors with
exit code 2, reading a slice's JSON, and writing the joined result atomically."""
import json
import os
import sys


class Tool:
    def __init__(self, name):
        self.name = name

    def fail(self, msg):
        print(f"{self.name}: error: {msg}", file=sys.stderr)
        sys.exit(2)

    def load(self, path):
        try:
            with open(path) as f:
                return json.load(f)
        except OSError as e:
            self.fail(f"{path}: cannot read ({e.strerror})")
        except json.JSONDecodeError as e:
            self.fail(f"{path}: not JSON ({e.msg}, line {e.lineno})")

    @staticmethod
    def write(path, result):
        """Temporary file, then rename; the pid keeps two writers of the same output apart."""
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
