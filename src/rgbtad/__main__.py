from rgbtad.cli import main

raise SystemExit(main())
