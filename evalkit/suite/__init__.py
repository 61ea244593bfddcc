"""The suite file: typed config (`config`), YAML with line numbers (`yaml_lines`) and
loading with file:line checks (`loader`)."""
