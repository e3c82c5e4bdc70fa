from pebuilder.cli import main

raise SystemExit(main())
