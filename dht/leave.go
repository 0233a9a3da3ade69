package dht

// Leave stops republishing the node's announcement under topic. Copies
// already stored expire with their TTL.
func (n *Node) Leave(topic string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.own, TopicKey(topic))
}
