package sdk

import "encoding/json"

// ref is a foreign key as admin-api writes it ({"id": ...} or null).
type ref struct {
	ID string `json:"id"`
}

func (r *ref) id() string {
	if r == nil {
		return ""
	}
	return r.ID
}

// Consumer is a consumers entity.
type Consumer struct {
	ID       string   `json:"id"`
	Username string   `json:"username"`
	CustomID string   `json:"custom_id"`
	Tags     []string `json:"tags"`
}

// Route is a routes entity (the fields plugins commonly read; Raw has all).
type Route struct {
	ID        string
	Name      string
	Tags      []string
	Paths     []string
	Hosts     []string
	Methods   []string
	ServiceID string
	Raw       json.RawMessage
}

// Service is a services entity (the fields plugins commonly read; Raw has
// all).
type Service struct {
	ID       string
	Name     string
	Tags     []string
	Protocol string
	Host     string
	Port     int
	Path     string
	Raw      json.RawMessage
}

// KeyAuthCredential is a keyauth_credentials entity.
type KeyAuthCredential struct {
	ID         string
	Key        string
	ConsumerID string
	Tags       []string
}

func parseConsumer(raw []byte) (Consumer, bool) {
	var c Consumer
	return c, json.Unmarshal(raw, &c) == nil
}

func parseRoute(raw []byte) (Route, bool) {
	var j struct {
		ID      string   `json:"id"`
		Name    *string  `json:"name"`
		Tags    []string `json:"tags"`
		Paths   []string `json:"paths"`
		Hosts   []string `json:"hosts"`
		Methods []string `json:"methods"`
		Service *ref     `json:"service"`
	}
	if json.Unmarshal(raw, &j) != nil {
		return Route{}, false
	}
	r := Route{ID: j.ID, Tags: j.Tags, Paths: j.Paths, Hosts: j.Hosts, Methods: j.Methods, ServiceID: j.Service.id(), Raw: raw}
	if j.Name != nil {
		r.Name = *j.Name
	}
	return r, true
}

func parseService(raw []byte) (Service, bool) {
	var j struct {
		ID       string   `json:"id"`
		Name     *string  `json:"name"`
		Tags     []string `json:"tags"`
		Protocol string   `json:"protocol"`
		Host     string   `json:"host"`
		Port     int      `json:"port"`
		Path     *string  `json:"path"`
	}
	if json.Unmarshal(raw, &j) != nil {
		return Service{}, false
	}
	s := Service{ID: j.ID, Tags: j.Tags, Protocol: j.Protocol, Host: j.Host, Port: j.Port, Raw: raw}
	if j.Name != nil {
		s.Name = *j.Name
	}
	if j.Path != nil {
		s.Path = *j.Path
	}
	return s, true
}

func parseKeyAuth(raw []byte) (KeyAuthCredential, bool) {
	var j struct {
		ID       string   `json:"id"`
		Key      string   `json:"key"`
		Tags     []string `json:"tags"`
		Consumer *ref     `json:"consumer"`
	}
	if json.Unmarshal(raw, &j) != nil {
		return KeyAuthCredential{}, false
	}
	return KeyAuthCredential{ID: j.ID, Key: j.Key, ConsumerID: j.Consumer.id(), Tags: j.Tags}, true
}
