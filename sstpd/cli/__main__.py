from sstpd.cli import main

raise SystemExit(main())
