package kafka

// SetLimits sets how many starts c runs at once and how many records it holds behind an
// unfinished one, so tests can reach the bounds with a few records.
func (c *Consumer) SetLimits(concurrency, maxPending int) {
	c.concurrency, c.maxPending = concurrency, maxPending
}
