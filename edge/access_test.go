package edge

import (
	"net/http"
	"testing"
)

func TestIsAccessRequest(t *testing.T) {
	tests := []struct {
		name   string
		header map[string]string
		want   bool
	}{
		{"adit access", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Protocol": "adit-access-tcp"}, true},
		{"among other protocols", map[string]string{"Connection": "keep-alive, Upgrade", "Upgrade": "WebSocket", "Sec-WebSocket-Protocol": "chat, adit-access-tcp"}, true},
		{"plain websocket", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Protocol": "chat"}, false},
		{"no upgrade", map[string]string{"Sec-WebSocket-Protocol": "adit-access-tcp"}, false},
		{"other upgrade", map[string]string{"Connection": "Upgrade", "Upgrade": "h2c", "Sec-WebSocket-Protocol": "adit-access-tcp"}, false},
		{"plain request", nil, false},
	}
	for _, tt := range tests {
		r, _ := http.NewRequest("GET", "http://h.example/", nil)
		for k, v := range tt.header {
			r.Header.Set(k, v)
		}
		if got := isAccessRequest(r); got != tt.want {
			t.Errorf("%s: isAccessRequest = %v, want %v", tt.name, got, tt.want)
		}
	}
}
