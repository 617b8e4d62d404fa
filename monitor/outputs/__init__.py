"""Tell: the output formats, the HTML report and notifications."""
