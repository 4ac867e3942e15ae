from services.cli.commands import main

raise SystemExit(main())
