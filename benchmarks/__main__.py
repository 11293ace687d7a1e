"""``python -m benchmarks``: run the benchmark cases and print the table."""

from benchmarks.runner import main

raise SystemExit(main())
