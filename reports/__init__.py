"""Turns results into what people read: run reports (JSON and HTML), Allure
environment and categories."""
