import sys

if "--template" in sys.argv[1:]:
    from .template import main as template_main

    template_main()
else:
    from .entrypoint import main

    main()
