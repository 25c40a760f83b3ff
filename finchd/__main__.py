from finchd.cli import main

raise SystemExit(main())
