"""One date-time format for the whole site, with seconds and the time zone.

Django's English default ("Nov. 30, 2026, 4:20 a.m.") has neither, so every job of
one minute looked the same in the admin. Django reads this module for English
through ``FORMAT_MODULE_PATH``.
"""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
