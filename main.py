"""rnnlab command line: ``python main.py fit|validate|test|predict --config configs/<experiment>.yaml``."""

from rnnlab.cli import main

if __name__ == "__main__":
    main()
