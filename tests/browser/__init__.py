"""Browser tests: the approval page in real headless Chromium (Debian's), driven by Playwright."""
