"""Files: vendor and native loading, exports, writing results safely."""
